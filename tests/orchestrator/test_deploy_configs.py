"""Every deploy config validates, names its launch command, fills one 8-GPU node, and is the
recipe of its paper's official code (ALGORITHMS.md §1.7, §2.6, §3; docs/algorithms.md)."""

import re
from pathlib import Path

import pytest

from orchestrator.config import build_plan, load_config

CONFIGS = sorted(Path("deploy/configs").glob("*.yaml"))
GPU_CONFIGS = [p.name for p in CONFIGS if not p.name.startswith("tiny")]  # tiny*.yaml: the CPU configs


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_validates_and_starts_with_its_launch_command(path):
    cfg = load_config(path)
    first = path.read_text().splitlines()[0]
    assert first.startswith(("# raygrpo train --config", "# ray job submit")) and path.name in first
    build_plan(cfg)


@pytest.mark.parametrize("name", GPU_CONFIGS)
def test_gpu_configs_fill_one_8_gpu_node_and_cite_every_value(name):
    path = Path("deploy/configs") / name
    cfg = load_config(path)
    r, lc = cfg.rollout, cfg.learner
    gpus = (
        r.num_workers * r.num_gpus + sum(s.num_gpus for s in cfg.reward.scorers) + lc.world_size * lc.num_gpus
    )
    assert gpus == pytest.approx(8)
    assert cfg.model.dtype == "bfloat16" and cfg.model.embeddings  # workers never load T5
    assert cfg.model.embeddings.startswith("/")  # not under the job's working dir (runs/ is excluded)
    assert cfg.orchestrator.prompts_per_iter % r.num_workers == 0  # groups split evenly
    text = path.read_text()
    assert "raygrpo embed" in text and "PROVISIONAL" in text
    # no algorithm knob is pinned without a source: every such line carries a comment
    for line in text.splitlines():
        if re.match(
            r"\s+(lr|num_steps|shift|group_size|resolution|guidance_scale|rank|alpha|sizes|minibatches|iterations):",
            line,
        ):
            assert "#" in line, line
    assert (cfg.model.finetune == "lora") == name.endswith("_lora.yaml") or name.startswith("sd35_flow")


def test_flux_chunk_grpo_is_gcpos_schedule():
    cfg = load_config("deploy/configs/flux_chunk_grpo.yaml")
    plan = build_plan(cfg)
    # 17 timesteps, static shift 3, every transition SDE, the 16 trainable in [2, 3, 4, 7]; the last never
    assert plan.num_transitions == 17 and all(plan.sde) and plan.trainable == (True,) * 16 + (False,)
    # the preset's GCPO list, scaled to the 16 trainable steps: the list itself
    from orchestrator.config import chunk_selector

    assert chunk_selector(cfg.learner).layouts(__import__("torch").zeros(1, 16)) == [[2, 3, 4, 7]]
    assert cfg.learner.chunks.mode == "scaled" and cfg.learner.timestep_fraction == 0.5
    # σ₁ = 3·(16/17) / (1 + 2·16/17) = 2.8235 / 2.8824 = 0.97959
    assert plan.sigmas[1] == pytest.approx(0.97959, abs=1e-5)
    assert (cfg.learner.clip_range, cfg.learner.max_grad_norm, cfg.learner.lr) == (5e-5, 0.01, 1e-5)
    assert (cfg.model.finetune, cfg.rollout.group_size, cfg.orchestrator.iterations) == ("full", 12, 150)
    assert [s.kind for s in cfg.reward.scorers] == ["hpsv3"]
    lora = load_config("deploy/configs/flux_chunk_grpo_lora.yaml")
    assert (lora.model.lora.rank, lora.model.lora.alpha, lora.learner.lr) == (128, 256.0, 3e-4)


def test_flux_e_grpo_has_the_papers_windows_and_columns():
    cfg = load_config("deploy/configs/flux_e_grpo.yaml")
    plan = build_plan(cfg)
    assert plan.windows == ((0, 1), (1, 2), (2, 4), (3, 5), (4, 6), (5, 8), (6, 9), (7, 10))
    assert plan.members_per_group(cfg.rollout.group_size) == 96  # 8 columns × G = 12
    assert cfg.learner.advantage_groups == "column" and cfg.learner.minibatch_order == "column"
    assert cfg.learner.lr == 2e-6 and cfg.reward.aggregation == "reward"
    assert {s.kind: s.weight for s in cfg.reward.scorers} == {"hpsv3": 0.7, "clip": 0.3}


def test_flux_dance_mix_and_sd35_flow_recipes():
    dance = load_config("deploy/configs/flux_dance_grpo.yaml")
    assert (dance.rollout.num_steps, dance.rollout.noise_level, dance.learner.minibatches) == (16, 0.3, 3)
    dance_lora = load_config("deploy/configs/flux_dance_grpo_lora.yaml")
    assert (dance_lora.rollout.num_steps, dance_lora.learner.minibatches, dance_lora.learner.lr) == (
        12,
        2,
        3e-4,
    )
    mix = load_config("deploy/configs/flux_mix_grpo.yaml")
    plan = build_plan(mix)
    assert plan.num_transitions == 25 and plan.at(0).trainable == tuple(k < 4 for k in range(25))
    assert plan.at(50).trainable == tuple(2 <= k < 6 for k in range(25)) and mix.learner.minibatches == 4
    flow = load_config("deploy/configs/sd35_flow_grpo.yaml")
    assert build_plan(flow).trainable == (True,) * 9 + (False,)  # int(10·0.99) = 9: all but the last
    assert (flow.learner.kl_coef, flow.model.guidance_scale, flow.rollout.group_size) == (0.04, 4.5, 24)
    assert (flow.model.lora.rank, flow.model.lora.alpha, flow.learner.lr) == (32, 64.0, 3e-4)


def test_sd35_flow_grpo_runs_flow_grpos_ocr_task_with_the_ocr_scorer():
    """The header's general_ocr_sd3 overrides validate: the OCR scorer on CPU, the freed GPU to a
    sixth rollout worker, prompts with quoted text; images are 512², so the scorer detects."""
    cfg = load_config(
        "deploy/configs/sd35_flow_grpo.yaml",
        [
            "reward.scorers=[{name: ocr, kind: ocr, num_cpus: 1, replicas: 8}]",
            "rollout.num_workers=6",
            "orchestrator.prompts_per_iter=12",
            "orchestrator.train_prompts=deploy/prompts/ocr_example.txt",
            "orchestrator.eval_prompts=deploy/prompts/ocr_example.txt",
        ],
    )
    r, lc = cfg.rollout, cfg.learner
    assert r.num_workers * r.num_gpus + lc.world_size * lc.num_gpus == 8
    assert cfg.orchestrator.prompts_per_iter % r.num_workers == 0
    assert cfg.model.resolution == 512 and cfg.reward.scorers[0].detect is None  # 512 > 96: detection
    text = Path("deploy/configs/sd35_flow_grpo.yaml").read_text()
    assert "replicas: 8}]' rollout.num_workers=6" in text and "orchestrator.prompts_per_iter=12" in text
    ocr = cfg.reward.scorers[0]
    assert (ocr.replicas, ocr.num_cpus, ocr.num_gpus) == (8, 1, 0)
    assert "orchestrator.eval_prompts=" in text
    with pytest.raises(Exception, match="names no text in double quotes"):  # the HPSv3 prompts: refused
        load_config("deploy/configs/sd35_flow_grpo.yaml", ["reward.scorers=[{name: ocr, kind: ocr}]"])
