"""Operating at scale, with real local Ray: async rollouts, worker deaths, live scaling, and
broadcast weight sync (gloo standing in for NCCL). A learner failure and the resume after it:
tests/e2e/test_actor_system.py."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray

from orchestrator.__main__ import main
from orchestrator.cluster import Cluster
from orchestrator.config import build_plan
from orchestrator.loop import train
from orchestrator.metrics import read_metrics
from orchestrator.rollouts import Rollouts

from .conftest import small_config

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
VOLATILE = ("time/", "elapsed_s", "throughput/", "recovered_failures")


def stable(rows):
    """Metrics lines without timings and the failure count: what must not change."""
    return [{k: v for k, v in r.items() if not k.startswith(VOLATILE)} for r in rows]


def async_config():
    """Async, 3 iterations, 2 rollout workers (a dead one's groups can go to the survivor)."""
    return small_config(orchestrator__mode="async", orchestrator__iterations=3, rollout__num_workers=2)


@pytest.fixture(scope="module")
def async_reference(local_ray, tmp_path_factory):
    """3 undisturbed async iterations: the reference for the async and the recovery tests."""
    run_dir = tmp_path_factory.mktemp("async") / "run"
    train(async_config(), run_dir)
    return run_dir


def test_async_ratios_use_the_generating_versions_log_probs(async_reference):
    rows = read_metrics(async_reference)
    # iteration 0 trains on v0 samples at v0; iterations 1, 2 on samples one version older
    assert [r["staleness"] for r in rows] == [0, 1, 1]
    assert [r["policy_version"] for r in rows] == [1, 2, 3]
    assert abs(rows[0]["learner/ratio_mean_first"] - 1) < 1e-5
    # Had the learner taken "old" log-probs from its current weights, every first ratio would
    # be exactly 1; from the generating version's they differ by one update's worth.
    for r in rows[1:]:
        assert abs(r["learner/ratio_mean_first"] - 1) > 1e-5, r["learner/ratio_mean_first"]
    assert all(r["groups_planned"] == r["groups_completed"] == 2 for r in rows)


def test_async_ray_loop_matches_the_single_process_loop(async_reference, tmp_path):
    """LocalCluster runs each launch to completion at once: same versions, same numbers."""
    from orchestrator.local import LocalCluster

    train(async_config(), tmp_path / "local", cluster_cls=LocalCluster)
    for ra, rb in zip(read_metrics(async_reference), read_metrics(tmp_path / "local")):
        assert ra["staleness"] == rb["staleness"]
        for key in (
            "reward/preference/mean",
            "reward/alignment/mean",
            "learner/loss",
            "learner/ratio_mean_first",
        ):
            assert ra[key] == pytest.approx(rb[key], rel=1e-5, abs=1e-6), key


class KillingRollouts(Rollouts):
    """Kills rollout actor 0's process (SIGKILL) right after the first start has launched
    iterations 0 and 1 (async: iteration 0's unit running on it, iteration 1's queued)."""

    def start(self, iteration, prompts, checkpoint):
        pid = ray.get(self.actors[0].info.remote())["pid"] if iteration == 0 else None
        super().start(iteration, prompts, checkpoint)
        if pid is not None:
            assert sorted(self.started) == [0, 1]
            os.kill(pid, signal.SIGKILL)


class KillingCluster(Cluster):
    """KillingRollouts, and the preference reward actor (its replica `victim`) killed (ray.kill)
    as iteration 1 is about to be scored."""

    rollouts_cls = KillingRollouts
    victim = 0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.scores = 0

    def score(self, batches):
        self.scores += 1
        if self.scores == 2:
            victim = self.reward_actors["preference"][self.victim]
            ray.kill(victim)
            dead(victim)  # ray.kill is asynchronous: the victim must not score this iteration
        return super().score(batches)


def dead(actor, timeout: float = 30) -> None:
    """Return once `actor`'s calls fail (ray.kill took effect)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ray.get(actor.info.remote())
        except ray.exceptions.RayActorError:
            return
        time.sleep(0.1)
    raise AssertionError(f"the killed actor still answers after {timeout} s")


def test_dead_rollout_and_reward_workers_are_replaced_and_no_group_is_lost(async_reference, tmp_path):
    train(async_config(), tmp_path / "run", cluster_cls=KillingCluster)
    rows, reference = read_metrics(tmp_path / "run"), read_metrics(async_reference)
    assert sum(r["recovered_failures"] for r in rows) == 2  # one rollout, one reward worker
    assert all(r["groups_planned"] == r["groups_completed"] == 2 for r in rows)
    # Noise derives from (seed, iteration, group): the re-run groups are the very samples of the
    # undisturbed run, each trained once — same rewards, losses, ratios and final weights.
    assert stable(rows) == stable(reference)
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["state"] == "finished"
    assert all(w["state"] == "alive" for w in status["workers"])
    assert sum(w["role"] == "rollout" for w in status["workers"]) == 2
    # the worker table counts the real replacements: rollout slot 0 and the preference scorer, once each
    restarts = {(w["role"], w["index"]): w["restarts"] for w in status["workers"]}
    assert restarts == {
        ("rollout", 0): 1,
        ("rollout", 1): 0,
        ("reward", 0): 1,
        ("reward", 1): 0,
        ("learner", 0): 0,
    }


class ReplicaKillingCluster(KillingCluster):
    """Only the reward side of KillingCluster: replica 1 of the preference scorer dies."""

    rollouts_cls = Rollouts
    victim = 1


def test_scorer_replicas_share_the_images_change_no_number_and_a_dead_one_is_replaced(
    async_reference, tmp_path
):
    """preference on 2 reward actors and alignment on 3: each rollout batch (2 groups of 4) is cut
    into even shares of rows (orchestrator/cluster.py `shares`), so every replica scores images,
    and the rewards go back in their rows: the metrics are the one-actor reference's to the bit,
    also after a replica dies mid-run and is replaced."""
    cfg = small_config(
        orchestrator__mode="async",
        orchestrator__iterations=3,
        rollout__num_workers=2,
        reward__scorers="[{name: preference, kind: preference, replicas: 2}, "
        "{name: alignment, kind: alignment, replicas: 3}]",
    )
    train(cfg, tmp_path / "run", cluster_cls=ReplicaKillingCluster)
    rows, reference = read_metrics(tmp_path / "run"), read_metrics(async_reference)
    assert sum(r["recovered_failures"] for r in rows) == 1
    assert stable(rows) == stable(reference)
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    reward = [w for w in status["workers"] if w["role"] == "reward"]
    assert [(w["index"], w["state"], w["restarts"]) for w in reward] == [
        (0, "alive", 0),
        (1, "alive", 1),
        (2, "alive", 0),
        (3, "alive", 0),
        (4, "alive", 0),
    ]
    # 8 images an iteration (2 groups of 4), rows [0, 8) in batch order. alignment's 3 replicas take
    # rows [0, 2), [2, 5), [5, 8) each time: 6 / 9 / 9 over 3 iterations. preference's 2 take [0, 4)
    # and [4, 8): 12 for replica 0; replica 1's replacement counts iterations 1 and 2 only, 8
    assert [w["images"] for w in reward] == [12, 8, 6, 9, 9]


def test_work_units_change_no_sample(local_ray, tmp_path):
    """rollout.units_per_worker 2: 4 groups in 4 units over 2 workers, each unit dealt to the first
    free worker. Noise derives from (seed, iteration, group), not the worker, so the samples,
    rewards and losses are the single-process loop's: the units add no bias."""
    from orchestrator.local import LocalCluster

    cfg = small_config(rollout__num_workers=2, rollout__units_per_worker=2, orchestrator__prompts_per_iter=4)
    train(cfg, tmp_path / "ray")
    train(cfg, tmp_path / "local", cluster_cls=LocalCluster)
    rows, local = read_metrics(tmp_path / "ray"), read_metrics(tmp_path / "local")
    assert len(rows) == len(local) == 2
    assert all(r["groups_planned"] == r["groups_completed"] == 4 for r in rows)
    for ra, rb in zip(rows, local):
        for key in (
            "reward/preference/mean",
            "reward/alignment/mean",
            "learner/loss",
            "learner/ratio_mean_first",
        ):
            assert ra[key] == pytest.approx(rb[key], rel=1e-5, abs=1e-6), key


class ScalingRollouts(Rollouts):
    """Between iterations, runs `raygrpo scale` as the test plans it, then lets the job apply it."""

    actions: dict = {}  # boundary index -> what the test does there

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.boundary = 0

    def rescale(self):
        action = self.actions.get(self.boundary)
        self.boundary += 1
        if action:
            action()
        super().rescale()


class ScalingCluster(Cluster):
    rollouts_cls = ScalingRollouts


def test_raygrpo_scale_1_2_1_during_a_run(local_ray, tmp_path):
    run_dir = tmp_path / "run"
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONPATH=str(ROOT))
    address = ray.get_runtime_context().gcs_address
    outputs = []

    def scale_up():  # a separate process, as a user would run it
        cmd = [
            sys.executable,
            "-m",
            "orchestrator",
            "scale",
            "--workers",
            "2",
            "--address",
            address,
            "--run",
            str(run_dir),
        ]
        out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        outputs.append(out.stdout)

    def scale_down():
        assert main(["scale", "--workers", "1"]) == 0

    ScalingRollouts.actions = {0: scale_up, 2: scale_down}
    cfg = small_config(rollout__num_workers=1, orchestrator__iterations=5, orchestrator__prompts_per_iter=3)
    train(cfg, run_dir, cluster_cls=ScalingCluster)

    rows = read_metrics(run_dir)
    assert [r["rollout_workers"] for r in rows] == [1, 2, 2, 1, 1]
    assert all(r["groups_planned"] == r["groups_completed"] == 3 for r in rows)
    assert all(
        abs(r["learner/ratio_mean_first"] - 1) < 1e-5 for r in rows
    )  # new workers held the current weights
    assert "asked for 2 rollout workers" in outputs[0]
    status = json.loads((run_dir / "status.json").read_text())
    assert sum(w["role"] == "rollout" for w in status["workers"]) == 1
    # the job is gone, and so is its control actor
    assert main(["scale", "--workers", "2"]) == 2


def test_weight_sync_object_store_then_broadcast_bucketed_and_rebuilt_when_the_actors_change(local_ray):
    """Both sync paths on one cluster: the object store (CPU default), then the NCCL path with
    gloo (learner rank 0 + rollout actors in one group, tiny buckets)."""
    import psutil

    cfg = small_config(rollout__num_workers=2, rollout__weight_sync="broadcast", rollout__sync_bucket_mb=0.05)
    cluster = Cluster(cfg, build_plan(cfg))
    try:
        # compute actors run at the driver's niceness (worker_niceness 0), not Ray's worker default of +15
        # (cluster.actor_env); the driver's own, so the suite may run under `nice -n 5`
        rows = cluster.rollouts.worker_rows() + cluster.worker_rows()
        assert {psutil.Process(w["pid"]).nice() for w in rows} == {os.nice(0)}
        rollouts = cluster.rollouts
        actors = rollouts.actors
        state, learner_sum = ray.get(cluster.learners[0].publish.remote())
        # the object-store path
        assert ray.get([a.load_weights.remote(state, 0) for a in actors]) == [learner_sum] * 2
        # an actor holding other weights is detected by the same checksum ...
        other = {k: v + (1e-3 if i == 0 else 0) for i, (k, v) in enumerate(state.items())}
        assert ray.get(actors[1].load_weights.remote(other, 0)) != learner_sum

        sync = rollouts.weights
        assert sync.mode == "broadcast" and sync.backend == "gloo"
        first = rollouts.sync(1)  # ... and the next sync restores it
        assert first == learner_sum == rollouts.checksum
        assert ray.get([a.checksum.remote() for a in rollouts.actors]) == [first] * 2
        assert len(ray.get(sync.plan_ref)) > 10  # ~4 MB of weights in 50 KB buckets

        rollouts.resize(3)  # the new actor gets v1 from a surviving actor; the group is stale
        assert ray.get(rollouts.actors[2].checksum.remote()) == first
        _train_once(cluster, cfg)
        second = rollouts.sync(2)  # rebuilt with 3 actors
        assert second != first
        assert sync.members == rollouts.actors
        assert ray.get([a.checksum.remote() for a in rollouts.actors]) == [second] * 3
        assert ray.get([a.info.remote() for a in rollouts.actors])[2]["policy_version"] == 2
    finally:
        cluster.shutdown()


def _train_once(cluster, cfg):
    """One real update, so the learner's weights move."""
    from orchestrator.run import compute_advantages

    batches = cluster.rollouts.rollout(
        [
            (0, "a red circle at the top left on a yellow background"),
            (1, "a red circle at the top left on a green background"),
        ],
        0,
    )
    adv = compute_advantages(cfg, cluster.score(batches), batches)
    cluster.update(batches, adv.samples, adv.values, adv.minibatches)
