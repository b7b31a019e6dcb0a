"""`ray start --head` on 127.0.0.1, then `ray job submit --working-dir . -- raygrpo train ...`."""

import json
import os
import re
import shutil
import tempfile
import time
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head():
    env = dict(
        os.environ,
        RAY_AUTH_MODE="disabled",
        RAY_USAGE_STATS_ENABLED="0",
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
    )
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    dash = free_port()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must stay < 108 chars
    subprocess.run(
        [
            "ray",
            "start",
            "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={free_port()}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dash}",
            "--num-cpus=4",
            # fixed by default (52365, 10001): another head on this machine would hold them and
            # leave this head's job agent unable to serve (`No available agent to submit job`)
            f"--dashboard-agent-listen-port={free_port()}",
            f"--ray-client-server-port={free_port()}",
            f"--temp-dir={temp}",
            "--disable-usage-stats",
        ],
        env=env,
        check=True,
        capture_output=True,
        timeout=180,
    )
    try:
        yield f"http://127.0.0.1:{dash}", env
    finally:
        stop_head(temp)
        shutil.rmtree(temp, ignore_errors=True)


def submit(cmd: list[str], env: dict) -> subprocess.CompletedProcess:
    """`ray job submit`, retried while the fresh head's job agent is still registering."""
    deadline = time.time() + 120
    while True:
        out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        if "No available agent" not in out.stdout + out.stderr or time.time() > deadline:
            return out
        time.sleep(3)


def stop_head(temp: str) -> None:
    """Stop only this head's processes (those naming its temp dir or a session under it);
    `ray stop` would stop every Ray on the machine."""
    import psutil

    mine = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(temp in part for part in proc.info["cmdline"] or []):
                mine.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    for proc in mine:
        proc.terminate()
    _, alive = psutil.wait_procs(mine, timeout=5)
    for proc in alive:
        proc.kill()


# The path presets and E-GRPO's window plan; the other three run through `raygrpo train` on the
# session's Ray in tests/e2e/test_algorithms.py.
JOB_PRESETS = ["chunk_grpo", "e_grpo"]


@pytest.mark.parametrize("algorithm", JOB_PRESETS)
def test_ray_job_submit_runs_each_preset(ray_head, tmp_path, algorithm):
    """Each preset end to end through `raygrpo train` as a Ray job: real actors, real DeepSpeed."""
    address, env = ray_head
    run_dir = tmp_path / "run"
    cmd = [
        "ray",
        "job",
        "submit",
        f"--address={address}",
        "--working-dir",
        ".",
        "--",
        "raygrpo",
        "train",
        "--config",
        "deploy/configs/tiny.yaml",
        "--run-dir",
        str(run_dir),
        f"algorithm={algorithm}",
        "orchestrator.iterations=2",
        "orchestrator.prompts_per_iter=2",
        "rollout.group_size=4",
        "rollout.num_steps=5",
        "rollout.num_workers=1",
        "orchestrator.eval_before_after=false",
    ]
    out = submit(cmd, env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "succeeded" in out.stdout
    # the driver's output ends on its summary: no actor log line after it
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout)  # the ray CLI colours its status lines
    driver = [
        ln.strip() for ln in plain.splitlines() if ln.strip() and " cli.py:" not in ln
    ]  # not the CLI's own
    assert driver[-1] == f"run dir: {run_dir}", driver[-4:]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [0, 1]
    assert json.loads((run_dir / "status.json").read_text())["state"] == "finished"
    for r in rows:
        assert abs(r["learner/ratio_mean_first"] - 1) < 1e-5  # rollout and learner agree under every plan
        assert r["groups_completed"] == r["groups_planned"] == 2
    effective = (run_dir / "config.yaml").read_text()
    assert f"algorithm: {algorithm}" in effective
    plan = json.loads((run_dir / "plan.json").read_text())
    if algorithm == "e_grpo":
        k = len(plan["windows"])
        assert k >= 2 and len(plan["exp_entropy"]) == len(plan["sigmas"]) - 1
        assert "advantage_groups: column" in effective
        # 2 prompts x K columns x G=4 members; zero-spread columns are dropped, never more
        assert 0 < rows[0]["samples/trained"] <= 2 * k * 4
    else:
        assert plan["windows"] == [] and "advantage_groups: prompt" in effective
        assert 0 < rows[0]["samples/trained"] <= 8
        assert plan["chunks"]["layout"] == [1, 1, 2] and plan["trainable_steps"] == [
            0,
            1,
            2,
            3,
        ]  # [2,3,4,7] on 4


def test_command_1_ends_on_its_summary(tmp_path):
    """README command 1 as a user runs it (`raygrpo train --config deploy/configs/tiny.yaml`: no
    cluster, so a private Ray), shrunk: everything it prints, stdout and stderr in one stream as
    a terminal shows them, ends on the summary; no actor log line, progress bar or Ray shutdown
    message comes after it."""
    heldout = tmp_path / "heldout.txt"
    heldout.write_text(
        "a red circle at the top left on a blue background\n"
        "a green square at the center on a magenta background\n"
    )
    run_dir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    out = subprocess.run(
        [
            "raygrpo",
            "train",
            "--config",
            "deploy/configs/tiny.yaml",
            "--run-dir",
            str(run_dir),
            "orchestrator.iterations=1",
            "orchestrator.prompts_per_iter=2",
            "rollout.group_size=4",
            "rollout.num_steps=5",
            "rollout.num_workers=1",
            f"orchestrator.eval_prompts={heldout}",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:]
    lines = [ln.rstrip() for ln in out.stdout.splitlines() if ln.strip()]
    assert lines[-6] == "held-out rewards (ODE, before -> after):", lines[-8:]
    assert re.fullmatch(r"  preference +\d\.\d{3} -> \d\.\d{3}", lines[-5]), lines[-8:]
    assert re.fullmatch(r"  alignment +\d\.\d{3} -> \d\.\d{3}", lines[-4]), lines[-8:]
    assert re.fullmatch(r"  fidelity +\d\.\d{3} -> \d\.\d{3}", lines[-3]), lines[-8:]  # the held-out judge
    assert lines[-2:] == [
        f"run dir: {run_dir}",
        f"grids: {run_dir}/samples/eval_before.png, {run_dir}/samples/eval_after.png",
    ], lines[-8:]
