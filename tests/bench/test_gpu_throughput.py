"""bench/gpu_throughput.py runs end to end on a scaled-down FLUX on CPU (the GPU run is on demand)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_tiny_run_writes_every_figure(tmp_path):
    out = tmp_path / "gpu.json"
    cmd = [sys.executable, "bench/gpu_throughput.py", "--tiny", "--out", str(out), "--steps", "3", "--batch", "4",
           "--micro-batch", "2", "--resolutions", "32", "48"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["tiny"] is True and set(result["rollout"]) == {"32", "48"}
    # 32 px / 2× tiny VAE -> 16² latent, packed 2×2 -> 64 tokens; 48 px -> 144
    assert [result["rollout"][r]["latent_tokens"] for r in ("32", "48")] == [64, 144]
    assert all(v["images_per_s"] > 0 for v in result["rollout"].values())
    assert result["learner"]["step_s"] > 0 and result["learner"]["transitions_per_sample"] == 3
    assert result["sync"]["tensors"] > 0 and result["sync"]["seconds"] >= 0


def test_full_size_run_refuses_cpu():
    done = subprocess.run([sys.executable, "bench/gpu_throughput.py"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert done.returncode != 0 and "needs a GPU" in done.stderr
