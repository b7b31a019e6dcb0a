"""The knobs that only show in a run (real Ray, real DeepSpeed): KL to the base, best-of-N,
dynamics chunks with weighted sampling and per-chunk reward mixes, together in one run.
Each algorithm preset runs end to end through `ray job submit -- raygrpo train` in
tests/e2e/test_job_submit.py."""

import json

import pytest

from orchestrator.loop import train
from orchestrator.metrics import read_metrics
from orchestrator.profile import profile

from .conftest import small_config

pytestmark = pytest.mark.slow


def test_kl_best_of_n_dynamics_chunks_weighted_sampling_and_chunk_rewards(local_ray, tmp_path):
    from orchestrator.config import load_config

    base = load_config("deploy/configs/tiny.yaml", ["rollout.num_steps=5", "learner.chunks.sizes=[2, 2]"])
    prompts = ["a red circle at the top left on a blue background", "a cyan square at the center on a red background"]
    prof = profile(base, prompts, tmp_path / "profile", num_chunks=[2])
    assert len(prof["l1_rel"]) == 5 and sum(prof["proposed_chunks"]["2"]) == 5
    cfg = small_config(
        learner__chunks__mode="dynamics", learner__chunks__sizes="null", learner__chunks__num_chunks=2,
        learner__chunks__profile=str(tmp_path / "profile" / "profile.json"), learner__chunks__per_sample=1,
        learner__best_of=2, learner__kl_coef=0.5, learner__lr=1e-3, orchestrator__iterations=3,
        reward__chunk_weights="[{alignment: 1.0}, {preference: 1.0}]",
    )
    train(cfg, tmp_path / "run")
    rows = read_metrics(tmp_path / "run")
    plan = json.loads((tmp_path / "run" / "plan.json").read_text())
    assert plan["chunks_per_sample"] == 1 and len(plan["chunk_weights"]) == 2
    # best-of-2 of each group of 4: at most 2 groups x 2 samples train
    assert all(r["samples/trained"] <= 4 for r in rows)
    assert all(abs(r["learner/ratio_mean_first"] - 1) < 1e-5 for r in rows)
    kl = [r["learner/kl"] for r in rows]
    assert kl[0] == 0.0  # identical policies before the first step
    assert kl[2] > 0.0  # two updates away from the frozen base
