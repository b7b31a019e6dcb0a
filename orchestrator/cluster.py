"""The only place that makes Ray actors and placement groups.

Rollout workers (one GPU each on clusters; a `RolloutPool` that can grow, shrink and replace
dead members), one reward worker per scorer (a GPU fraction; replaced if it dies), the
learner ranks packed in a placement group (a dead rank stops the job), and the job's named
control actor that `raygrpo scale` talks to. On CPU every actor asks for the CPU resources
its config names (0 by default, so the demo packs on 2 cores) and sets its own torch
threads. The driver holds only refs and small dicts: images and trajectories move
rollout -> reward / learner through the object store.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from learner.worker import LearnerWorker
from orchestrator.config import Config
from orchestrator.control import CONTROL_NAMESPACE, ScaleControl, control_name
from orchestrator.faults import WORKER_DIED, gather, gather_learners
from orchestrator.pool import RolloutBatch, RolloutPool, split_groups  # noqa: F401 (RolloutBatch, split_groups: re-exported)
from orchestrator.weights import WeightSync
from reward.worker import RewardWorker
from rollout.plan import RolloutPlan
from rollout.policy import policy_from_config
from rollout.worker import RolloutWorker, pick_device


def worker_row(role: str, index: int, info: dict) -> dict:
    """One row of the worker table (status.json `workers`, the dashboard): the actor's own
    info() plus its busy throughput (images it generated, scored or trained on, per second
    spent working) and its restart count (0: actors are not restarted yet)."""
    seconds = info.get("seconds") or 0.0
    throughput = info.get("images", 0) / seconds if seconds > 0 else None
    return {"role": role, "index": index, "state": "alive", "restarts": 0, **info, "images_per_s": throughput}


def actor_env(niceness: int, **extra: str) -> dict:
    """runtime_env of a compute actor. Ray starts worker processes at nice 15, so on a CPU
    node any busy nice-0 process (raylet, GCS, a driver) preempts one of an actor's OpenMP
    threads and stalls the whole parallel region (measured: a 512² matmul loop 3-4x slower
    than in the driver on 2 loaded cores); the rollout, reward and learner actors *are* the
    workload, so they run at `orchestrator.worker_niceness` (0, as Ray's own job supervisor
    does). Env vars merge with the job's runtime_env."""
    return {"env_vars": {"RAY_worker_niceness": str(niceness), **extra}}


def learner_env(num_gpus: float) -> dict:
    return {} if num_gpus > 0 else {"DS_ACCELERATOR": "cpu"}


class Cluster:
    def __init__(self, cfg: Config, plan: RolloutPlan, run_dir: Path | None = None):
        self.cfg = cfg
        self.plan = plan
        workers = [self._rollout_actor(i) for i in range(cfg.rollout.num_workers)]
        self.reward_workers = {s.name: self._reward_actor(s) for s in cfg.reward.scorers}
        self.learners, self.pg = self._learner_group()
        weights = WeightSync(cfg, self.learners, initial_checksum=ray.get(workers[0].checksum.remote()))
        self.pool = RolloutPool(self._rollout_actor, workers, weights, plan, cfg.rollout.group_size,
                                cfg.rollout.units_per_worker)
        self.control = self._control_actor(run_dir) if run_dir is not None else None
        self.recovered = 0  # reward workers replaced since the last `health()`

    # -- actors ----------------------------------------------------------------------------------
    def _rollout_actor(self, index: int):
        r = self.cfg.rollout
        remote = ray.remote(RolloutWorker).options(num_cpus=r.num_cpus, num_gpus=r.num_gpus,
                                                   runtime_env=actor_env(self.cfg.orchestrator.worker_niceness))
        return remote.remote(self.cfg.model, r, self.plan, self.cfg.orchestrator.seed, index)

    def _reward_actor(self, scorer):
        return ray.remote(RewardWorker).options(num_cpus=scorer.num_cpus, num_gpus=scorer.num_gpus,
                                                runtime_env=actor_env(self.cfg.orchestrator.worker_niceness)).remote(scorer)

    def _control_actor(self, run_dir: Path):
        """The job's named actor (namespace `raygrpo`) that `raygrpo scale` finds and writes to."""
        name = control_name(run_dir)
        try:
            return ray.remote(ScaleControl).options(name=name, namespace=CONTROL_NAMESPACE, num_cpus=0).remote(
                self.cfg.rollout.num_workers)
        except ValueError as err:  # the name is taken
            raise RuntimeError(f"another running job already uses run dir {run_dir} ({name}); "
                               "give this run its own --run-dir") from err

    def _learner_group(self):
        lc = self.cfg.learner
        bundle = {"CPU": max(lc.num_cpus, 0.001)}
        if lc.num_gpus:
            bundle["GPU"] = lc.num_gpus
        pg = placement_group([dict(bundle) for _ in range(lc.world_size)], strategy="PACK")
        ray.get(pg.ready())
        factory = functools.partial(policy_from_config, self.cfg.model, device=pick_device(lc.num_gpus))
        actors = [
            ray.remote(LearnerWorker).options(
                num_cpus=bundle["CPU"], num_gpus=lc.num_gpus,
                runtime_env=actor_env(self.cfg.orchestrator.worker_niceness, **learner_env(lc.num_gpus)),
                scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=rank),
            ).remote(factory, lc, rank, lc.world_size)
            for rank in range(lc.world_size)
        ]
        addr, port = ray.get(actors[0].rendezvous.remote())
        ray.get([a.setup.remote(addr, port) for a in actors])
        return actors, pg

    @property
    def rollout_workers(self) -> list:
        return self.pool.workers

    # -- the phases ----------------------------------------------------------------------------
    def launch(self, groups: list[tuple[int, str]], iteration: int, preview: bool) -> list[RolloutBatch]:
        """Start rolling out whole groups on the pool; returns at once (refs only)."""
        return self.pool.launch(groups, iteration, preview)

    def collect(self, batches: list[RolloutBatch]) -> list[RolloutBatch]:
        """Wait for launched batches; a dead worker's batch is re-run on its replacement."""
        return self.pool.collect(batches)

    def rollout(self, groups: list[tuple[int, str]], iteration: int, preview: bool) -> list[RolloutBatch]:
        return self.collect(self.launch(groups, iteration, preview))

    def score(self, batches: list[RolloutBatch]) -> dict[str, np.ndarray]:
        """Rewards [B] per scorer, in batch order; Ray resolves each image ref in the reward
        worker. A reward worker that dies is replaced and its batches are scored again."""
        asked = {}  # (scorer, batch index) -> the reward worker asked

        def ask(key, died=None):
            name, i = key
            if died is not None and asked[key] == self.reward_workers[name]:  # the first to see this death
                self._replace_scorer(name)
            asked[key] = self.reward_workers[name]
            return asked[key].score.remote(batches[i].images, batches[i].prompts)

        keys = [(name, i) for name in self.reward_workers for i in range(len(batches))]
        rewards = gather({key: ask(key) for key in keys}, ask)
        return {name: np.concatenate([rewards[(name, i)] for i in range(len(batches))]) for name in self.reward_workers}

    def _replace_scorer(self, name: str) -> None:
        """A fresh reward worker for scorer `name` (scorers are frozen: nothing to hand over)."""
        self.recovered += 1
        ray.kill(self.reward_workers[name])
        self.reward_workers[name] = self._reward_actor(next(s for s in self.cfg.reward.scorers if s.name == name))

    def update(self, batches: list[RolloutBatch], samples: list[int], active: list[bool], advantages: list[float]) -> dict:
        """One learner update; the trajectory refs travel wrapped in a list, so each rank
        fetches only the batches its shard needs. A dead rank raises LearnerFailure."""
        refs = [b.trajectory for b in batches]
        sizes = [len(b.prompts) for b in batches]
        per_rank = gather_learners([l.update.remote(refs, sizes, samples, active, advantages) for l in self.learners],
                                   "update")
        return merge_rank_stats(per_rank)

    def sync(self, version: int) -> str:
        """Once every launched rollout has finished, put the learner's weights (version
        `version`) in every rollout worker and check each holds exactly them (orchestrator/weights.py)."""
        return self.pool.install(version)

    def rescale(self) -> None:
        """Apply a `raygrpo scale` request, if one came (call between iterations)."""
        if self.control is None:
            return
        request = ray.get(self.control.take.remote())
        if request is not None:
            self.pool.resize(request["workers"])
            self.control.applied.remote(len(self.pool), request["id"])

    def health(self) -> dict:
        """For the metrics line: pool size, and workers replaced since the last call."""
        recovered, self.recovered = self.recovered + self.pool.take_recovered(), 0
        return {"rollout_workers": len(self.pool), "recovered_failures": recovered}

    def evaluate(self, prompts: list[str], seeds: list[int], preview_cols: int) -> tuple[dict[str, float], bytes]:
        """ODE samples on the rollout workers, scored by the reward workers: ({scorer: mean}, preview PNG)."""
        workers = self.pool.workers
        n = len(workers)
        parts = [(prompts[i * len(prompts) // n:(i + 1) * len(prompts) // n],
                  seeds[i * len(seeds) // n:(i + 1) * len(seeds) // n]) for i in range(n)]
        calls = [w.sample_ode.options(num_returns=2).remote(p, s, preview_cols if i == 0 else 0)
                 for i, (w, (p, s)) in enumerate(zip(workers, parts)) if p]
        batches = [RolloutBatch(images, None, p) for (images, _), (p, _) in zip(calls, [q for q in parts if q[0]])]
        rewards = self.score(batches)
        preview = ray.get(calls[0][1]).get("preview_png", b"")
        return {name: float(np.mean(r)) for name, r in rewards.items()}, preview

    def save(self, path: str) -> None:
        gather_learners([l.save.remote(path) for l in self.learners], "checkpoint save")

    def load(self, path: str) -> None:
        gather_learners([l.load.remote(path) for l in self.learners], "checkpoint load")

    def workers(self) -> list[dict]:
        """Rows of the worker table (role, index, pid, node, version, counters, throughput)."""
        rows = []
        for role, actors in (("rollout", self.pool.workers), ("reward", list(self.reward_workers.values())),
                             ("learner", self.learners)):
            for i, ref in enumerate([a.info.remote() for a in actors]):
                try:
                    rows.append(worker_row(role, i, ray.get(ref)))
                except WORKER_DIED:
                    rows.append({"role": role, "index": i, "state": "dead", "restarts": 0})
        return rows

    def shutdown(self) -> None:
        for a in [*self.pool.workers, *self.reward_workers.values(), *self.learners]:
            ray.kill(a)
        if self.control is not None:
            ray.kill(self.control)
        remove_placement_group(self.pg)


def merge_rank_stats(per_rank: list[dict]) -> dict:
    """Chunk-weighted means over ranks; min / max / sums where those make sense."""
    total = sum(s["chunks"] for s in per_rank) or 1
    out = {k: sum(s[k] * s["chunks"] for s in per_rank) / total
           for k in ("loss", "clip_fraction", "ratio_mean", "approx_kl", "ratio_mean_first", "kl")}
    out["ratio_min"] = min(s["ratio_min"] for s in per_rank)
    out["ratio_max"] = max(s["ratio_max"] for s in per_rank)
    out["grad_norm"] = per_rank[0]["grad_norm"]
    out["learner_s"] = max(s["learner_s"] for s in per_rank)
    out["chunks"] = total
    return out
