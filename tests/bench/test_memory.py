"""bench/memory.py: the ZeRO accounting by hand, the learner's rows per forward from the plan, GPU
packing, and the meta-device tracker (linear in rows, equal to the same model run on the CPU)."""

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import memory  # noqa: E402
from memory_model import build_transformer, peak_bytes, transformer_inputs  # noqa: E402
from orchestrator.config import build_plan, load_config  # noqa: E402

GB = 1e9


def config(name, *overrides):
    return load_config(ROOT / "deploy" / "configs" / name, list(overrides))


def test_zero_accounting_by_hand(monkeypatch):
    monkeypatch.setattr(memory, "activations", lambda cfg, rows, train: 0.0)
    n = {"params": 12e9, "trainable": 12e9, "largest_block": 1e8}
    full = config(
        "flux_chunk_grpo.yaml",
        "learner.world_size=3",
        "learner.zero_stage=3",
        "learner.offload_optimizer=true",
        "learner.micro_batch=1",
    )
    rank = memory.learner_rank(full, build_plan(full), n)
    b = rank["breakdown"]
    # ZeRO-3 over 3: 12e9·2 B / 3 = 8 GB + the two largest blocks gathered 2·1e8·2 B = 0.4 GB
    assert b["weights"] == pytest.approx(8.4) and b["optimizer"] == 0
    assert b["grads"] == pytest.approx(2 * 2 * 5e7 / GB)  # offloaded: reduce buckets only
    assert rank["host_ram_gb"] == pytest.approx(16 * 12e9 / 3 / GB)  # fp32 grads + master + m + v = 64 GB
    plain = config(
        "flux_chunk_grpo.yaml",
        "learner.world_size=3",
        "learner.zero_stage=2",
        "learner.offload_optimizer=false",
    )
    b = memory.learner_rank(plain, build_plan(plain), n)["breakdown"]
    # ZeRO-2: every rank holds all 24 GB of weights; fp32 grads 4·12e9/3 = 16 GB; Adam 12·12e9/3 = 48 GB
    assert (b["weights"], b["grads"], b["optimizer"]) == pytest.approx((24.0, 16.0 + 0.2, 48.0))


@pytest.mark.parametrize(
    "name, overrides, rows",
    [
        ("flux_chunk_grpo.yaml", [], 7),
        ("flux_chunk_grpo.yaml", ["learner.micro_batch=9"], 9),
        ("flux_dance_grpo.yaml", [], 2),
        ("flux_e_grpo.yaml", [], 4),
        ("flux_mix_grpo.yaml", [], 4),
        ("sd35_flow_grpo.yaml", [], 8 * 2),
    ],
)
def test_learner_rows_per_forward(name, overrides, rows):
    """max(micro_batch, the widest chunk): a pass packs up to micro_batch model inputs and never
    splits a chunk (Chunk-GRPO [2, 3, 4, 7] -> a pass of 7 at micro_batch 2; DanceGRPO and MixGRPO
    steps -> micro_batch; E-GRPO one window step a member -> micro_batch), × 2 under SD3's CFG."""
    cfg = config(name, *overrides)
    assert memory.learner_rows(cfg, build_plan(cfg)) == rows


def test_committed_results_cover_every_gpu_deploy_config_as_it_is_and_each_fits_80_gb():
    """bench/results/memory.json is regenerated whenever a deploy config's resources change: every
    GPU config is there, with the learner settings it has now, and fits an 80 GB GPU."""
    import json

    results = {
        r["config"]: r for r in json.loads((ROOT / "bench/results/memory.json").read_text())["configs"]
    }
    gpu = [
        p for p in (ROOT / "deploy/configs").glob("*.yaml") if not p.name.startswith("tiny")
    ]  # tiny*.yaml: CPU
    names = sorted(p.name for p in gpu)
    assert sorted(results) == names
    for name in names:
        cfg, r = config(name), results[name]
        lc = cfg.learner
        assert r["learner"] == {
            "world_size": lc.world_size,
            "zero_stage": lc.zero_stage,
            "micro_batch": lc.micro_batch,
            "offload_optimizer": lc.offload_optimizer,
            "offload_params": lc.offload_params,
            "gradient_checkpointing": cfg.model.gradient_checkpointing,
        }, name
        learner = next(a for a in r["actors"] if a["role"] == "learner")
        assert learner["rows_per_forward"] == memory.learner_rows(cfg, build_plan(cfg)), name
        assert r["fits"]["80GB"], name


def test_fractional_scorers_share_a_gpu_and_whole_ones_do_not():
    actors = [
        {"role": "rollout", "count": 2, "gpus": 1, "total": 30.0},
        {"role": "reward:hpsv3", "count": 1, "gpus": 0.6, "total": 20.0},
        {"role": "reward:clip", "count": 1, "gpus": 0.4, "total": 3.0},
    ]
    gpus = memory.pack(actors)
    assert [g["actors"] for g in gpus] == [["rollout"], ["rollout"], ["reward:hpsv3", "reward:clip"]]
    assert gpus[2]["gb"] == 23.0 and all(g["fits"]["80GB"] for g in gpus)


def test_meta_tracker_is_linear_in_rows_and_counts_what_the_cpu_allocates():
    cfg = dict(
        patch_size=1,
        in_channels=16,
        num_layers=1,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=True,
        axes_dims_rope=(4, 6, 6),
    )
    peaks = {}
    for device in ("meta", "cpu"):
        torch.manual_seed(0)
        model = build_transformer("flux", cfg, device=device)
        model.enable_gradient_checkpointing()
        peaks[device] = [
            peak_bytes(model, transformer_inputs("flux", cfg, rows, 128, 16, device=device), train=True)
            for rows in (1, 2, 3)
        ]
    one, two, three = peaks["meta"]
    assert three - two == pytest.approx(two - one, rel=0.02)  # linear in rows: what memory.py extrapolates
    # the CPU's flash attention keeps its log-sum-exp in float32 where the GPU kernel's meta shape says
    # otherwise: a few kB apart, nothing more
    assert [abs(m - c) / c for m, c in zip(peaks["meta"], peaks["cpu"])] == pytest.approx([0, 0, 0], abs=0.02)
