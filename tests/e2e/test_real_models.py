"""Tiny FLUX and SD3.5 policies and the HPSv3 / CLIP / ImageReward scorers, loaded from their
official on-disk layouts, trained for 2 iterations by the real actor system (Ray + DeepSpeed)."""

import json

import pytest
import torch

from orchestrator import checkpoint
from orchestrator.__main__ import main
from orchestrator.loop import train
from orchestrator.metrics import read_metrics
from rollout.models.base import Policy

from .conftest import small_config

pytestmark = pytest.mark.slow


def scorers_yaml(reward_models, kinds):
    items = []
    for kind in kinds:
        path, base = reward_models[kind]
        items.append(json.dumps({"name": kind, "kind": kind, "path": path, "base": base, "batch_size": 4}))
    return "[" + ", ".join(items) + "]"


def check_run(run_dir, scorer_names):
    rows = read_metrics(run_dir)
    assert [r["iteration"] for r in rows] == [0, 1]
    for r in rows:
        # the learner recomputes exactly what the rollout computed (guidance / CFG, LoRA, bf16 aside)
        assert abs(r["learner/ratio_mean_first"] - 1) < 1e-5
        for name in scorer_names:
            assert r[f"reward/{name}/std"] > 0  # the scorers see different images
        assert r["zero_std_ratio"] == 0 and r["learner/grad_norm"] > 0  # every group carries signal
    saved = checkpoint.load_policy_weights(checkpoint.latest(run_dir))
    assert saved and all(".lora_A." in k or ".lora_B." in k for k in saved)  # only adapters are checkpointed
    assert Policy.state_checksum(saved) == rows[-1]["weights_checksum"]
    return rows


def test_flux_lora_with_hpsv3_and_clip(local_ray, flux_dir, reward_models, tmp_path):
    cfg = small_config(
        model__path=str(flux_dir),
        model__resolution=32,
        model__max_sequence_length=24,
        model__lora__rank=4,
        reward__scorers=scorers_yaml(reward_models, ["hpsv3", "clip"]),
        rollout__shift="resolution",
    )
    train(cfg, tmp_path / "run")
    rows = check_run(tmp_path / "run", ["hpsv3", "clip"])
    assert rows[-1]["policy_version"] == 2
    # --resume restores the LoRA run (DeepSpeed state saved without the frozen base weights)
    train(
        cfg.model_copy(update={"orchestrator": cfg.orchestrator.model_copy(update={"iterations": 3})}),
        tmp_path / "run",
        resume=True,
    )
    rows = read_metrics(tmp_path / "run")
    assert [r["iteration"] for r in rows] == [0, 1, 2] and rows[-1]["policy_version"] == 3
    assert abs(rows[-1]["learner/ratio_mean_first"] - 1) < 1e-5


def test_sd3_cfg_with_imagereward_from_the_embedding_cache(local_ray, sd3_dir, reward_models, tmp_path):
    overrides = [
        f"model.path={sd3_dir}",
        "model.resolution=32",
        "model.max_sequence_length=16",
        f"model.embeddings={tmp_path / 'embeddings'}",
        "model.guidance_scale=4.5",
    ]
    # raygrpo embed: every prompt the run will see (train, eval, the CFG negative prompt) -> cache
    assert (
        main(["embed", "--config", "deploy/configs/tiny.yaml", "--prompts", "tiny:heldout", *overrides]) == 0
    )
    assert (tmp_path / "embeddings" / "index.json").exists()
    cfg = small_config(
        **{k.replace(".", "__"): v for k, v in (o.split("=", 1) for o in overrides)},
        reward__scorers=scorers_yaml(reward_models, ["imagereward"]),
    )
    train(cfg, tmp_path / "run")
    check_run(tmp_path / "run", ["imagereward"])


def test_flux_bf16_checkpointing_lora_zero3_broadcast_iteration(local_ray, flux_dir, tmp_path):
    """One iteration as a GPU node runs it, through Ray + DeepSpeed: bf16 transformer, gradient
    checkpointing, LoRA, ZeRO-3 over 2 learner ranks, the KL reference (the same transformer
    with its adapters off), weights broadcast in small buckets gathered bucket by bucket."""
    cfg = small_config(
        model__path=str(flux_dir),
        model__resolution=32,
        model__max_sequence_length=24,
        model__dtype="bfloat16",
        model__gradient_checkpointing="true",
        model__lora__rank=4,
        learner__world_size=2,
        learner__zero_stage=3,
        learner__kl_coef=0.01,
        learner__torch_threads=1,
        learner__minibatches=1,  # one optimizer step: every ratio of the batch is checked below
        rollout__weight_sync="broadcast",
        rollout__sync_bucket_mb=0.01,
        rollout__shift="resolution",
        orchestrator__iterations=1,
        orchestrator__checkpoint_every=1,
    )
    train(cfg, tmp_path / "run")
    [row] = read_metrics(tmp_path / "run")
    # bf16 rollout and checkpointed bf16 ZeRO-3 learner compute the same log-probs: every ratio of
    # the (only) minibatch is 1. (ZeRO-3's memory-efficient linear made them 1 ± 6e-5: engine.py)
    assert abs(row["learner/ratio_min"] - 1) < 1e-6 and abs(row["learner/ratio_max"] - 1) < 1e-6
    assert row["learner/grad_norm"] > 0 and row["policy_version"] == 1
    assert row["learner/kl"] == 0  # first minibatch: LoRA B = 0, so the policy is its reference exactly
    saved = checkpoint.load_policy_weights(checkpoint.latest(tmp_path / "run"))
    assert saved and all(".lora_A." in k or ".lora_B." in k for k in saved)
    assert {v.dtype for v in saved.values()} == {torch.bfloat16}
    assert Policy.state_checksum(saved) == row["weights_checksum"]  # what every worker verified it received
