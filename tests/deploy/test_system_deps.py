"""README command 2 on a fresh machine: its first step, scripts/system-deps.sh, installs the
system packages the tests need when they are missing, and `.ci/run` runs exactly that line.
The script is driven here with a PATH that lacks them and a stand-in apt-get that records
what it was asked; the real install was tried in a fresh Debian 12 root (docs/bad-inputs.md)."""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "system-deps.sh"


def readme_test_command() -> str:
    """The line `.ci/run` extracts (same awk program)."""
    ci = (ROOT / ".ci" / "run").read_text()
    awk = ci.split("cmd=$(awk '", 1)[1].split("' README.md)", 1)[0]
    return subprocess.run(
        ["awk", awk, "README.md"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_ci_runs_the_readme_command_which_installs_system_packages_first():
    cmd = readme_test_command()
    assert "\n" not in cmd  # one line a user can paste
    assert cmd.startswith("bash scripts/system-deps.sh && ") and cmd.endswith("python -m pytest -q")
    assert 'bash -euo pipefail -c "$cmd"' in (ROOT / ".ci" / "run").read_text()
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


HAVE_LIBS = (
    "echo '\tlibGL.so.1 (libc6,x86-64) => /x/libGL.so.1'; "
    "echo '\tlibgthread-2.0.so.0 (libc6,x86-64) => /x/g.so'"
)


def run_script(tmp_path, tools: dict[str, str], os_release: str = "ID=debian\n", ldconfig: str = HAVE_LIBS):
    """Run the script with PATH = only `tools` ({name: shell body}) plus `id` and `env`, and a
    stand-in ldconfig that lists the shared libraries `ldconfig` prints (default: libGL and glib)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in tools.items():  # fresh files (never written through a link to the real tool)
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    for name in {"id", "env"} - set(tools):
        (bin_dir / name).symlink_to(
            subprocess.run(["which", name], capture_output=True, text=True).stdout.strip()
        )
    (tmp_path / "os-release").write_text(os_release)
    (tmp_path / "ldconfig").write_text(f"#!/bin/bash\n{ldconfig}\n")
    (tmp_path / "ldconfig").chmod(0o755)
    env = {
        "PATH": str(bin_dir),
        "OS_RELEASE": str(tmp_path / "os-release"),
        "HOME": str(tmp_path),
        "LDCONFIG": str(tmp_path / "ldconfig"),
    }
    return subprocess.run(["/bin/bash", str(SCRIPT)], env=env, capture_output=True, text=True)


PYTHON_WITHOUT_HEADERS = "echo /nonexistent/include python3.11-dev"  # what the script asks the interpreter


def test_missing_packages_are_installed_with_apt_get(tmp_path):
    log = tmp_path / "apt.log"
    out = run_script(tmp_path, {"apt-get": f'echo "$@" >> {log}', "python3": PYTHON_WITHOUT_HEADERS})
    if os.getuid() == 0:
        assert out.returncode == 0, out.stderr
        assert log.read_text().splitlines() == [
            "update -qq",
            "install -y -qq --no-install-recommends g++ python3.11-dev chromium chromium-driver",
        ]
    else:  # no sudo on this PATH: the script says what it needs
        assert out.returncode == 1 and "needs root or sudo" in out.stderr


def test_ubuntu_gets_its_package_names_through_sudo(tmp_path):
    log = tmp_path / "sudo.log"
    out = run_script(
        tmp_path,
        {"apt-get": "exit 0", "sudo": f'echo "$@" >> {log}', "id": "echo 1000"},
        os_release="ID=ubuntu\nID_LIKE=debian\n",
    )
    assert out.returncode == 0, out.stderr
    assert (
        log.read_text()
        .splitlines()[-1]
        .endswith("install -y -qq --no-install-recommends g++ chromium-browser chromium-chromedriver")
    )


def test_without_apt_or_privileges_it_names_what_to_install(tmp_path):
    (tmp_path / "a").mkdir()
    out = run_script(tmp_path / "a", {})
    assert out.returncode == 1 and "system packages missing: g++ chromium chromium-driver" in out.stderr
    (tmp_path / "b").mkdir()
    out = run_script(tmp_path / "b", {"apt-get": "exit 0", "id": "echo 1000"})
    assert out.returncode == 1 and "needs root or sudo" in out.stderr


def test_opencv_libraries_are_installed_when_the_loader_lacks_them(tmp_path):
    log = tmp_path / "apt.log"
    out = run_script(
        tmp_path,
        {
            "apt-get": f'echo "$@" >> {log}',
            "sudo": f'echo "$@" >> {log}',
            "id": "echo 1000",
            "g++": "",
            "chromium": "",
            "chromedriver": "",
        },
        ldconfig="exit 0",
    )
    assert out.returncode == 0, out.stderr
    assert (
        log.read_text()
        .splitlines()[-1]
        .endswith("install -y -qq --no-install-recommends libgl1 libglib2.0-0")
    )


def test_nothing_to_do_when_everything_is_present(tmp_path):
    include = tmp_path / "include"
    include.mkdir()
    (include / "Python.h").write_text("")
    out = run_script(
        tmp_path, {"g++": "", "chromium": "", "chromedriver": "", "python3": f"echo {include} python3.11-dev"}
    )
    assert out.returncode == 0 and "are present" in out.stdout, out.stderr
