"""The Ray actor system for real: local Ray, DeepSpeed ZeRO-2 across 2 learner actors."""

import json

import numpy as np
import pytest
import ray
import torch

from orchestrator import checkpoint
from orchestrator.cluster import Cluster
from orchestrator.faults import LearnerFailure
from orchestrator.loop import train
from orchestrator.metrics import read_metrics
from rollout.models.base import Policy
from rollout.trajectory import Trajectory

from .conftest import small_config

pytestmark = pytest.mark.slow


def test_two_rollout_workers_two_learner_ranks_and_the_driver_never_fetches(local_ray, tmp_path, monkeypatch):
    fetched = []
    real_get = ray.get

    def spy(refs, *args, **kwargs):  # every ray.get the driver makes
        out = real_get(refs, *args, **kwargs)
        fetched.extend(out if isinstance(refs, list) else [out])
        return out

    monkeypatch.setattr(ray, "get", spy)
    cfg = small_config(rollout__num_workers=2, learner__world_size=2, orchestrator__checkpoint_every=1)
    result = train(cfg, tmp_path / "run")
    monkeypatch.setattr(ray, "get", real_get)

    # The driver fetched small things only: never a Trajectory, never an image batch.
    assert fetched
    for obj in fetched:
        assert not isinstance(obj, Trajectory)
        assert not (isinstance(obj, np.ndarray) and obj.ndim == 4), "an image batch reached the driver"
        assert not (
            isinstance(obj, dict)
            and any(isinstance(v, torch.Tensor) and v.numel() > 1000 for v in obj.values())
        )

    rows = read_metrics(tmp_path / "run")
    assert [r["iteration"] for r in rows] == [0, 1]
    for r in rows:
        assert abs(r["learner/ratio_mean_first"] - 1) < 1e-5  # rollout and learner agree
        assert r["groups_planned"] == r["groups_completed"] == 2
        assert 0 <= r["reward/preference/mean"] <= 1 and 0 <= r["reward/alignment/mean"] <= 1
        assert {f"time/{p}" for p in ("rollout", "score", "update", "sync")} <= set(r)
    assert [r["policy_version"] for r in rows] == [1, 2]
    # The checksum every rollout worker confirmed is the checksum of the saved weights.
    last = checkpoint.latest(tmp_path / "run")
    saved = checkpoint.load_policy_weights(last)
    assert Policy.state_checksum(saved) == rows[-1]["weights_checksum"]
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["state"] == "finished"
    assert {w["role"] for w in status["workers"]} == {"rollout", "reward", "learner"}
    assert len([w for w in status["workers"] if w["role"] == "learner"]) == 2
    assert (tmp_path / "run" / "samples" / "iter_00000.png").stat().st_size > 0
    assert list((tmp_path / "run" / "tensorboard").glob("events.*"))
    assert result["last"]["iteration"] == 1


class LearnerKillingCluster(Cluster):
    """Kills learner rank 0 (ray.kill) as the third update starts: iteration 2, after the
    checkpoint of iterations 0-1."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.updates = 0

    def update(self, *args):
        self.updates += 1
        if self.updates == 3:
            ray.kill(self.learners[0])
        return super().update(*args)


def test_a_learner_failure_names_the_checkpoint_and_resume_is_exact(local_ray, tmp_path):
    """4 iterations straight == 2 iterations, a learner rank killed in the third, --resume for the
    last 2: the error names the checkpoint, and metrics and weights equal the straight run's."""
    cfg = small_config(orchestrator__iterations=4, orchestrator__checkpoint_every=2)
    train(cfg, tmp_path / "straight")

    run_dir = tmp_path / "split"
    with pytest.raises(LearnerFailure) as err:
        train(cfg, run_dir, cluster_cls=LearnerKillingCluster)
    message = str(err.value)
    assert "learner rank 0 died during update" in message
    assert str(run_dir / "checkpoints" / "iter_000002") in message
    assert f"--run-dir {run_dir} --resume" in message
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "failed" and "iter_000002" in status["error"]
    assert [r["iteration"] for r in read_metrics(run_dir)] == [0, 1]
    train(cfg, run_dir, resume=True)

    def stable(rows):
        drop = ("time/", "elapsed_s", "throughput/")
        return [{k: v for k, v in r.items() if not k.startswith(drop)} for r in rows]

    straight, split = read_metrics(tmp_path / "straight"), read_metrics(run_dir)
    assert [r["iteration"] for r in split] == [0, 1, 2, 3]
    assert stable(straight) == stable(split)
    a = checkpoint.load_policy_weights(checkpoint.latest(tmp_path / "straight"))
    b = checkpoint.load_policy_weights(checkpoint.latest(run_dir))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert checkpoint.latest(run_dir).name == "iter_000004"


def test_resume_without_checkpoint_is_a_clear_error(local_ray, tmp_path):
    from orchestrator.errors import UserError

    with pytest.raises(UserError, match="no complete checkpoint"):
        train(small_config(), tmp_path / "empty", resume=True)


def test_ray_loop_matches_the_single_process_loop(local_ray, tmp_path):
    """The readable version is the oracle: the same config through LocalCluster (no Ray) and
    through Ray actors gives the same rewards, losses and weights."""
    from orchestrator.local import LocalCluster

    cfg = small_config(rollout__num_workers=2, rollout__torch_threads=2, learner__torch_threads=2)
    train(cfg, tmp_path / "ray")
    train(cfg, tmp_path / "local", cluster_cls=LocalCluster)
    a, b = read_metrics(tmp_path / "ray"), read_metrics(tmp_path / "local")
    for ra, rb in zip(a, b):
        for key in ("reward/preference/mean", "reward/alignment/mean", "learner/loss", "advantage/abs_mean"):
            assert ra[key] == pytest.approx(rb[key], rel=1e-5, abs=1e-6), key
    wa = checkpoint.load_policy_weights(checkpoint.latest(tmp_path / "ray"))
    wb = checkpoint.load_policy_weights(checkpoint.latest(tmp_path / "local"))
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-7)
