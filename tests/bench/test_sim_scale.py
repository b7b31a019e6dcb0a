"""bench/sim_scale.py --quick (4 simulated rollout workers through the real driver loop) writes every
figure, with byte counts that follow from the payload sizes. No time is asserted."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
MIB = 2**20


def test_quick_run_writes_every_figure(tmp_path):
    out = tmp_path / "sim"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "bench/sim_scale.py", "--quick", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.with_suffix(".json").read_text())
    assert out.with_suffix(".png").stat().st_size > 0
    assert "bench/sim_scale.py --quick" in out.with_suffix(".md").read_text()
    assert result["machine"]["machine"] and result["command"].startswith("python bench/sim_scale.py")
    assert list(result["sweep"]) == ["4"]
    spec, run = result["spec"], result["sweep"]["4"]
    even, slow = run["even"], run["one_slow"]
    # 4 iterations: the first (warm-up) and the last (final checkpoint) are not measured
    assert even["iterations_measured"] == slow["iterations_measured"] == 2
    # per iteration 4 workers × 1 group × G 2 = 8 images, each a 1024² RGB image (3 MiB) and
    # 16 × 4096 × 64 bf16 latents (8 MiB): 88 MiB put
    assert even["bytes_put"] == slow["bytes_put"] == 8 * (3 + 8) * MIB
    # read back: 2 scorers × 8 images (48 MiB), the learner's 8 trajectories (64 MiB), the
    # 4 MiB weights by each of 4 workers (16 MiB)
    assert even["bytes_read"] == (48 + 64 + 16) * MIB
    assert (
        even["store_peak_bytes"] >= even["bytes_put"]
    )  # one iteration's payload sits in the store during the update
    assert even["store_created_bytes"] > 0
    for r in (even, slow):
        assert r["wall_s"] > 0 and r["waits_s"] > 0 and r["driver_cpu_s"] > 0 and r["sync_s"] > 0
        assert r["overhead_s"] + r["waits_s"] == pytest.approx(r["wall_s"])
        assert r["update_busy_s"] >= spec["learner_s"]
        assert r["rollout_to_update_s"] >= r["score_busy_s"] > 0  # scoring lies between the two
    # the slow worker (2×) sets the rollout's critical path
    assert even["rollout_busy_max_s"] >= spec["rollout_s_per_group"]
    assert slow["rollout_busy_max_s"] >= 2 * spec["rollout_s_per_group"]
    assert run["tail_cost"] == pytest.approx(slow["wall_s"] / even["wall_s"] - 1)
    assert result["actor_memory"]["actor_pss_mib_median"] > 0
    assert result["serialization"]["torch_trajectory_float32"]["bytes_per_image"] == 17 * 4096 * 64 * 4
    assert result["fit_overhead_s"]["best"] is None  # one worker count: nothing to fit
