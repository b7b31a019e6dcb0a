"""The text world end to end: the shipped tiny:text model, the PP-OCRv4 reward actor, the
PP-OCRv6 and fidelity judges, and the monitor's held-out evaluations, on local Ray."""

import json

import numpy as np
import pytest
import torch

from orchestrator import checkpoint
from orchestrator.config import load_config
from orchestrator.evaluate import eval_images, score_images
from orchestrator.loop import train
from orchestrator.metrics import read_metrics
from orchestrator.prompts import read_prompts
from reward.worker import build_scorer
from rollout.policy import policy_from_config
from rollout.tiny import text_world

pytestmark = pytest.mark.slow


def test_a_text_run_is_scored_by_ocr_and_watched_by_the_judges(local_ray, tmp_path):
    eval_prompts = tmp_path / "eval.txt"
    eval_prompts.write_text("\n".join(read_prompts(text_world.prompt_file("heldout"))[:2]) + "\n")
    cfg = load_config(
        "deploy/configs/tiny_text.yaml",
        [
            "rollout.num_steps=5",
            "rollout.group_size=4",
            "rollout.num_workers=1",
            "learner.micro_batch=8",
            "orchestrator.prompts_per_iter=2",
            "orchestrator.iterations=2",
            "orchestrator.heldout_every=1",
            f"orchestrator.eval_prompts={eval_prompts}",
            "orchestrator.eval_samples_per_prompt=2",
            "orchestrator.dashboard=false",
        ],
    )
    result = train(cfg, tmp_path / "run")
    rows = read_metrics(tmp_path / "run")
    assert [r["iteration"] for r in rows] == [0, 1]
    for r in rows:
        assert 0 <= r["reward/ocr/mean"] <= 1 and r["time/heldout"] > 0
        assert {"heldout/ocr/mean", "heldout/ocr_heldout/mean", "heldout/fidelity/mean"} <= set(r)
        assert r["heldout/train_reward"] == r["heldout/ocr/mean"] and r["heldout/hacking"] in (0, 1)
    before = result["before"]
    assert set(before) == {"ocr", "ocr_heldout", "fidelity", "seconds"}
    baseline = json.loads((tmp_path / "run" / "heldout_baseline.json").read_text())
    assert baseline == {k: v for k, v in before.items() if k != "seconds"}
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    # tiny_text.yaml's OCR scorer and judge on 2 replicas each: the numbers below are still one model's
    assert [w["scorer"] for w in status["workers"] if w["role"] == "reward"] == ["ocr", "ocr"]
    judges = [w["scorer"] for w in status["workers"] if w["role"] == "judge"]
    assert judges == ["ocr_heldout", "ocr_heldout", "fidelity"]
    assert all(w["images"] > 0 for w in status["workers"] if w["role"] in ("reward", "judge"))

    # The monitor's last numbers are those of the final weights, re-evaluated here in-process
    # (same prompts, seeds and sampler; 1 torch thread like the rollout worker).
    policy = policy_from_config(cfg.model)
    policy.load_trainable_state(checkpoint.load_policy_weights(checkpoint.latest(tmp_path / "run")))
    with torch.no_grad():
        torch.set_num_threads(1)
        try:
            batch, images = eval_images(
                policy,
                read_prompts(eval_prompts),
                seed=cfg.orchestrator.seed,
                samples_per_prompt=2,
                num_steps=5,
            )
        finally:
            torch.set_num_threads(2)
    assert images.shape == (4, 32, 64, 3)
    judges = {s.name: build_scorer(s) for s in [*cfg.reward.scorers, *cfg.reward.heldout]}
    again = score_images(judges, batch, images)
    for name, value in again.items():
        assert rows[-1][f"heldout/{name}/mean"] == pytest.approx(value, abs=1e-6), name
    assert result["after"]["fidelity"] == pytest.approx(again["fidelity"], abs=1e-6)
    assert np.isfinite(list(again.values())).all()
