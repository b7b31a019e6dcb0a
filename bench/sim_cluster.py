"""The real `Cluster` and `Rollouts` with simulated actors (bench/sim_workers.py), for
bench/sim_scale.py.

Only the three actor factories are replaced (Cluster's reward and learner ones, Rollouts'
`_new_actor`); start / take / score / update / sync / rescale / worker rows / shutdown and the
weight transport behind them are the real code. The rollout actors outlive one `train()` (a
cache, reset between runs), so a sweep starts each actor process once. `record` receives, per
run, each iteration's launch time and driver CPU time, and every worker call's (method, start,
end, bytes).
"""

from __future__ import annotations

import functools
import threading
import time

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from bench.sim_workers import SimLearnerWorker, SimRewardWorker, SimRolloutWorker, SimSpec
from orchestrator.actors import actor_env
from orchestrator.cluster import Cluster
from orchestrator.rollouts import Rollouts


class SimRollouts(Rollouts):
    cache: list = []  # rollout actors kept between runs of one sweep

    def __init__(self, *args, spec: SimSpec, record: dict, **kwargs):
        self.spec, self.record = spec, record
        super().__init__(*args, **kwargs)

    def _new_actor(self, index: int):
        if SimRollouts.cache:
            actor = SimRollouts.cache.pop()
            ray.get(actor.reset.remote(index, self.spec))
            return actor
        r = self.cfg.rollout
        return (
            ray.remote(SimRolloutWorker)
            .options(
                num_cpus=r.num_cpus,
                runtime_env=actor_env(self.cfg.orchestrator.worker_niceness),
            )
            .remote(self.spec, r.group_size, index)
        )

    def _launch(self, groups, iteration, preview):
        self.record["launches"].append((iteration, time.time(), time.process_time()))
        return super()._launch(groups, iteration, preview)

    def shutdown(self) -> None:
        """Keep the actors for the next run."""
        SimRollouts.cache += self.actors


class SimCluster(Cluster):
    def __init__(self, cfg, plan, run_dir=None, *, spec: SimSpec, record: dict):
        self.spec, self.record = spec, record
        self.rollouts_cls = functools.partial(SimRollouts, spec=spec, record=record)
        record.update(launches=[], calls=[])
        super().__init__(cfg, plan, run_dir)

    # -- Cluster's two factories -------------------------------------------------------------------

    def _reward_actor(self, scorer):
        return (
            ray.remote(SimRewardWorker)
            .options(
                num_cpus=scorer.num_cpus,
                runtime_env=actor_env(self.cfg.orchestrator.worker_niceness),
            )
            .remote(self.spec, scorer.name)
        )

    def _learner_group(self) -> None:
        """Sets self.pg and self.learners, as Cluster's does (its __init__ then sets them up)."""
        lc = self.cfg.learner
        bundle = {"CPU": max(lc.num_cpus, 0.001)}
        self.pg = pg = placement_group([dict(bundle) for _ in range(lc.world_size)], strategy="PACK")
        ray.get(pg.ready())
        self.learners = [
            ray.remote(SimLearnerWorker)
            .options(
                num_cpus=bundle["CPU"],
                runtime_env=actor_env(self.cfg.orchestrator.worker_niceness),
                scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=rank),
            )
            .remote(self.spec, rank, lc.world_size)
            for rank in range(lc.world_size)
        ]

    # -- recording -------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Collect every actor's call log; keep the rollout actors for the next run."""
        self.record["launches"].append((None, time.time(), time.process_time()))
        roles = {
            "rollout": self.rollouts.actors,
            "reward": [a for replicas in self.reward_actors.values() for a in replicas],
            "learner": self.learners,
        }
        for role, actors in roles.items():
            for i, log in enumerate(ray.get([a.calls.remote() for a in actors])):
                self.record["calls"] += [
                    {"role": role, "actor": f"{role}{i}", "method": m, "start": s, "end": e, "bytes": b}
                    for m, s, e, b in log
                ]
        self.rollouts.shutdown()
        for a in [*roles["reward"], *self.learners]:
            ray.kill(a)
        if self.control is not None:
            ray.kill(self.control)
        remove_placement_group(self.pg)

    @staticmethod
    def clear() -> None:
        for a in SimRollouts.cache:
            ray.kill(a)
        SimRollouts.cache = []


class StoreSampler:
    """Polls the raylet's object store stats (store stats only, no per-object listing) every
    `period` s in a thread: samples (time, bytes used, cumulative bytes created, bytes spilled)."""

    def __init__(self, period: float = 0.05):
        self.period, self.samples = period, []
        self._stop = threading.Event()

    def __enter__(self):
        from ray._private.internal_api import get_memory_info_reply, get_state_from_address

        state = get_state_from_address(ray.get_runtime_context().gcs_address)

        def poll():
            while not self._stop.is_set():
                s = get_memory_info_reply(state).store_stats
                self.samples.append(
                    (
                        time.time(),
                        s.object_store_bytes_used,
                        s.cumulative_created_bytes,
                        s.spilled_bytes_total,
                    )
                )
                self._stop.wait(self.period)

        self._thread = threading.Thread(target=poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
