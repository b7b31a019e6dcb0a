"""The linter and formatter run in CI (issue 16): `ruff check .` and `ruff format --check .` pass
over the whole repository, with the config of pyproject.toml ([tool.ruff]: line length 110,
pycodestyle errors and warnings, pyflakes). To fix a failure: `ruff format . && ruff check --fix .`,
then break the remaining long lines by hand."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ruff(*args: str) -> subprocess.CompletedProcess:
    # --no-cache: a test run leaves no .ruff_cache behind in the checkout
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args, "--no-cache", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )


def test_ruff_config_line_length_at_most_110():
    config = (ROOT / "pyproject.toml").read_text()
    section = config.split("[tool.ruff]", 1)[1].split("\n[", 1)[0]
    length = re.search(r"^line-length\s*=\s*(\d+)", section, flags=re.M)
    assert length, "pyproject.toml [tool.ruff] sets no line-length"
    assert int(length.group(1)) <= 110


def test_ruff_check_passes():
    result = ruff("check")
    assert result.returncode == 0, f"ruff check failed:\n{result.stdout}{result.stderr}"


def test_ruff_format_check_passes():
    result = ruff("format", "--check")
    assert result.returncode == 0, (
        f"ruff format --check failed (run `ruff format .`):\n{result.stdout}{result.stderr}"
    )
