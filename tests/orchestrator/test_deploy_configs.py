"""Every deploy config validates, names its launch command, and fills one 8-GPU node."""

from pathlib import Path

import pytest

from orchestrator.config import build_plan, load_config

CONFIGS = sorted(Path("deploy/configs").glob("*.yaml"))
GPU_CONFIGS = ["flux_chunk_grpo.yaml", "flux_dance_grpo.yaml", "flux_e_grpo.yaml", "sd35_dance_grpo.yaml"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_validates_and_starts_with_its_launch_command(path):
    cfg = load_config(path)
    first = path.read_text().splitlines()[0]
    assert first.startswith(("# raygrpo train --config", "# ray job submit")) and path.name in first
    build_plan(cfg)


@pytest.mark.parametrize("name", GPU_CONFIGS)
def test_gpu_configs_fill_one_8_gpu_node(name):
    cfg = load_config(Path("deploy/configs") / name)
    r, lc = cfg.rollout, cfg.learner
    gpus = r.num_workers * r.num_gpus + sum(s.num_gpus for s in cfg.reward.scorers) + lc.world_size * lc.num_gpus
    assert gpus == pytest.approx(8)
    assert cfg.model.dtype == "bfloat16" and cfg.model.embeddings  # workers never load T5
    assert "raygrpo embed" in (Path("deploy/configs") / name).read_text()


def test_flux_chunk_grpo_is_the_papers_schedule():
    cfg = load_config("deploy/configs/flux_chunk_grpo.yaml")
    plan = build_plan(cfg)
    assert len(plan.sigmas) == 17 and plan.num_transitions == 16 and all(plan.sde)
    assert [plan.chunk_ids.count(j) for j in range(4)] == [2, 3, 4, 7]
    assert [s.kind for s in cfg.reward.scorers] == ["hpsv3"]
    # 720 px -> (720 / 16)² = 2025 tokens: μ = 0.5 + 0.65·(2025 − 256)/3840 = 0.7994, shift
    # exp(μ) = 2.2243 (not the static 3); σ₁ = 2.2243·(15/16) / (1 + 1.2243·(15/16)) = 0.9709
    assert plan.sigmas[1] == pytest.approx(0.9709, abs=1e-4)


def test_flux_e_grpo_merges_low_entropy_steps_into_branch_columns():
    cfg = load_config("deploy/configs/flux_e_grpo.yaml")
    plan = build_plan(cfg)
    # 16 steps at shift 2.2243: the low-entropy tail merges, leaving 11 transitions; the 8
    # that start in the first half (before step 8) are branch steps
    assert plan.num_transitions == 11 and plan.branches == tuple(range(8))
    assert plan.members_per_group(cfg.rollout.group_size) == 48
    assert cfg.learner.advantage_groups == "column"
    assert {s.kind for s in cfg.reward.scorers} == {"hpsv3", "clip"}
