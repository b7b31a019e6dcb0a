"""bench/gpu_throughput.py: its FLOP formula by hand, and its --tiny run (CPU) through the same code
path as the GPU run (bf16, gradient checkpointing, LoRA), results saved phase by phase."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))


def test_flux_forward_flops_by_hand_and_against_torchs_counter():
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from gpu_models import TINY_FLUX, flux_forward_flops
    from memory_model import build_transformer, transformer_inputs

    cfg = dict(TINY_FLUX, num_single_layers=1)  # D = 2 heads × 16 = 32, 1 double + 1 single block
    # L = 4 image + 2 text tokens:
    #   double  24·32²·6 = 147456, attention 4·6²·32 = 4608, AdaLN 2·2·6·32² = 24576   -> 176640
    #   single  147456 + 4608 + AdaLN 2·3·32² = 6144                                   -> 158208
    #   embed   2·(16·32·4 + 32·32·2 + 16·32·4) = 12288, MLPs 2·((256+32)·32·2 + (32+32)·32) = 40960,
    #           norm_out 2·2·32² = 4096                                                -> 57344
    assert flux_forward_flops(cfg, 4, 2) == 176640 + 158208 + 57344 == 392192
    model = build_transformer("flux", cfg, device="meta", dtype=torch.float32)
    with FlopCounterMode(display=False) as counter:  # every matmul torch runs (meta: attention as bmm)
        model(
            **transformer_inputs("flux", cfg, 1, 32, 2, dtype=torch.float32)
        )  # 32 px -> (32/16)² = 4 tokens
    assert counter.get_total_flops() == 392192


@pytest.mark.slow
def test_tiny_run_saves_every_phase_and_keeps_going_past_a_failed_one(tmp_path):
    out = tmp_path / "gpu.json"
    # 34 px is no multiple of the tiny VAE's 4: that rollout phase fails, the others must not
    cmd = [
        sys.executable,
        "bench/gpu_throughput.py",
        "--tiny",
        "--out",
        str(out),
        "--steps",
        "3",
        "--batch",
        "4",
        "--micro-batch",
        "2",
        "--resolutions",
        "32",
        "34",
        "--learner-samples",
        "2",
        "--learner-micro-batch",
        "1",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 1, done.stderr[-3000:]  # a phase failed
    result = json.loads(out.read_text())
    phases = result["phases"]
    assert result["setup"]["dtype"] == "bfloat16" and list(phases) == [
        "build",
        "rollout_32",
        "rollout_34",
        "learner",
        "sync",
        "scorer_hpsv3",
    ]
    assert "must be a multiple" in phases["rollout_34"]["error"]
    # 32 px / 2× tiny VAE -> 16² latent, packed 2×2 -> 64 tokens
    assert phases["rollout_32"]["latent_tokens"] == 64 and phases["rollout_32"]["images_per_s"] > 0
    learner = phases["learner"]
    assert learner["step_s"] > 0 and learner["transitions"] == 2 * 3 and learner["model_tflops"] > 0
    # bf16 rollout (micro-batch 2) and checkpointed learner (micro-batch 1) agree inside the clip range
    # before any optimizer step; after the warm-up's step the ratio is measured, not bounded
    assert learner["max_abs_log_ratio_before_any_step"] < learner["clip_range"]
    assert math.isfinite(learner["max_abs_log_ratio_after_one_step"])
    assert phases["sync"]["checksums_equal"] and phases["sync"]["tensors"] > 0
    assert phases["scorer_hpsv3"]["output_shape"] == [16, 2] and phases["scorer_hpsv3"]["images_per_s"] > 0
    assert (tmp_path / "gpu.md").exists() and not list(tmp_path.glob("*.tmp"))


def test_full_size_run_refuses_cpu():
    done = subprocess.run(
        [sys.executable, "bench/gpu_throughput.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert done.returncode != 0 and "needs a GPU" in done.stderr
