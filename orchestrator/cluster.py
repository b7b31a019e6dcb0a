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

from learner.config import chunk_selector
from learner.worker import LearnerWorker, worst
from orchestrator.config import Config
from orchestrator.control import CONTROL_NAMESPACE, ScaleControl, control_name
from orchestrator.errors import ActorFailed, UserError, remote_message
from orchestrator.faults import WORKER_DIED, gather, gather_learners, started
from orchestrator.pool import RolloutBatch, RolloutPool, split_groups  # noqa: F401 (RolloutBatch, split_groups: re-exported)
from orchestrator.weights import WeightSync
from reward.worker import RewardWorker
from rollout.plan import RolloutPlan
from rollout.policy import policy_from_config
from rollout.worker import RolloutWorker


def worker_row(role: str, index: int, info: dict, restarts: int = 0) -> dict:
    """One row of the worker table (status.json `workers`, the dashboard): the actor's own
    info() plus its busy throughput (images it generated, scored or trained on, per second
    spent working) and `restarts`: how many times this slot's actor died and was replaced."""
    seconds = info.get("seconds") or 0.0
    throughput = info.get("images", 0) / seconds if seconds > 0 else None
    return {"role": role, "index": index, "state": "alive", "restarts": restarts, **info, "images_per_s": throughput}


def actor_env(niceness: int, **extra: str) -> dict:
    """runtime_env of a compute actor. Ray starts worker processes at nice 15, so on a CPU
    node any busy nice-0 process (raylet, GCS, a driver) preempts one of an actor's OpenMP
    threads and stalls the whole parallel region (measured: a 512² matmul loop 3-4x slower
    than in the driver on 2 loaded cores); the rollout, reward and learner actors *are* the
    workload, so they run at `orchestrator.worker_niceness` (0, as Ray's own job supervisor
    does). Env vars merge with the job's runtime_env."""
    return {"env_vars": {"RAY_worker_niceness": str(niceness), "PYTHONUNBUFFERED": "1", **extra}}


def learner_env(num_gpus: float) -> dict:
    return {} if num_gpus > 0 else {"DS_ACCELERATOR": "cpu"}


class Cluster:
    rollout_cls, reward_cls = RolloutWorker, RewardWorker  # the actor classes (tests inject faulty ones)

    def __init__(self, cfg: Config, plan: RolloutPlan, run_dir: Path | None = None):
        self.cfg = cfg
        self.plan = plan
        self.pool = self.control = self.pg = None
        self.starting = [self._rollout_actor(i) for i in range(cfg.rollout.num_workers)]
        self.reward_workers = {s.name: self._reward_actor(s) for s in cfg.reward.scorers}
        self.judge_workers = {s.name: self._reward_actor(s) for s in cfg.reward.heldout}  # held-out evaluations only
        self.restarts = {s.name: 0 for s in [*cfg.reward.scorers, *cfg.reward.heldout]}  # reward workers replaced
        self.learners: list = []
        self.recovered = 0  # reward workers replaced since the last `health()`
        try:  # a failed start leaves no actor behind
            self._learner_group()
            model = f"model.path {cfg.model.path!r}"  # what each actor loads, for the message of one that cannot
            started({**{f"rollout worker {i}": (w, model) for i, w in enumerate(self.starting)},
                     **{f"reward worker {s.name!r}": (self.reward_workers[s.name], f"reward.scorers {s.name!r} "
                                                      f"(path {s.path!r}, base {s.base!r})") for s in cfg.reward.scorers},
                     **{f"learner rank {r}": (a, model) for r, a in enumerate(self.learners)}})
            addr, port = ray.get(self.learners[0].rendezvous.remote())
            ray.get([a.setup.remote(addr, port) for a in self.learners])
            weights = WeightSync(cfg, self.learners, initial_checksum=ray.get(self.starting[0].checksum.remote()))
            self.pool = RolloutPool(self._rollout_actor, self.starting, weights, plan, cfg.rollout.group_size,
                                    cfg.rollout.units_per_worker)
            self.control = self._control_actor(run_dir) if run_dir is not None else None
        except BaseException:
            self.shutdown()
            raise

    # -- actors ----------------------------------------------------------------------------------
    def _rollout_actor(self, index: int):
        r = self.cfg.rollout
        remote = ray.remote(self.rollout_cls).options(num_cpus=r.num_cpus, num_gpus=r.num_gpus,
                                                   runtime_env=actor_env(self.cfg.orchestrator.worker_niceness))
        return remote.remote(self.cfg.model, r, self.plan, self.cfg.orchestrator.seed, index, chunk_selector(self.cfg.learner))

    def _reward_actor(self, scorer):
        return ray.remote(self.reward_cls).options(num_cpus=scorer.num_cpus, num_gpus=scorer.num_gpus,
                                                runtime_env=actor_env(self.cfg.orchestrator.worker_niceness)).remote(scorer)

    def _control_actor(self, run_dir: Path):
        """The job's named actor (namespace `raygrpo`) that `raygrpo scale` finds and writes to."""
        name = control_name(run_dir)
        try:
            return ray.remote(ScaleControl).options(name=name, namespace=CONTROL_NAMESPACE, num_cpus=0).remote(
                self.cfg.rollout.num_workers)
        except ValueError as err:  # the name is taken
            raise UserError(f"another running job already uses run dir {run_dir} ({name}); "
                               "give this run its own --run-dir") from err

    def _learner_group(self) -> None:
        """The learner ranks, packed in a placement group (set up by __init__ once all started)."""
        lc = self.cfg.learner
        bundle = {"CPU": max(lc.num_cpus, 0.001)}
        if lc.num_gpus:
            bundle["GPU"] = lc.num_gpus
        self.pg = pg = placement_group([dict(bundle) for _ in range(lc.world_size)], strategy="PACK")
        ray.get(pg.ready())
        # no device here: each rank picks its own inside the actor (the driver may sit on a CPU-only head)
        factory = functools.partial(policy_from_config, self.cfg.model)
        self.learners = [
            ray.remote(LearnerWorker).options(
                num_cpus=bundle["CPU"], num_gpus=lc.num_gpus,
                runtime_env=actor_env(self.cfg.orchestrator.worker_niceness, **learner_env(lc.num_gpus)),
                scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=rank),
            ).remote(factory, lc, rank, lc.world_size)
            for rank in range(lc.world_size)
        ]

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

    def score(self, batches: list[RolloutBatch], judges: bool = False) -> dict[str, np.ndarray]:
        """Rewards [B] per scorer (and per held-out judge with `judges`), in batch order; Ray
        resolves each image ref in the reward worker. A reward worker that dies is replaced
        and its batches are scored again."""
        workers = {**self.reward_workers, **(self.judge_workers if judges else {})}
        asked = {}  # (scorer, batch index) -> the reward worker asked

        def ask(key, died=None):
            name, i = key
            if died is not None and asked[key] == self._reward_worker(name):  # the first to see this death
                self._replace_scorer(name)
            asked[key] = self._reward_worker(name)
            return asked[key].score.remote(batches[i].images, batches[i].prompts)

        keys = [(name, i) for name in workers for i in range(len(batches))]

        def failed(key, err) -> ActorFailed:  # the scorer raised: never turned into a reward
            return ActorFailed(f"reward worker {key[0]!r} failed scoring the {len(batches[key[1]].prompts)} images of "
                               f"rollout batch {key[1]}: {remote_message(err)}")

        rewards = gather({key: ask(key) for key in keys}, ask, failed)
        for name, i in keys:
            if len(rewards[(name, i)]) != len(batches[i].prompts):
                raise ActorFailed(f"reward worker {name!r} returned {len(rewards[(name, i)])} rewards for the "
                                  f"{len(batches[i].prompts)} samples rollout batch {i} reported")
        return {name: np.concatenate([rewards[(name, i)] for i in range(len(batches))]) for name in workers}

    def _reward_worker(self, name: str):
        return self.reward_workers[name] if name in self.reward_workers else self.judge_workers[name]

    def _replace_scorer(self, name: str) -> None:
        """A fresh reward worker for scorer or judge `name` (frozen: nothing to hand over)."""
        self.recovered += 1
        self.restarts[name] += 1
        ray.kill(self._reward_worker(name))
        workers = self.reward_workers if name in self.reward_workers else self.judge_workers
        workers[name] = self._reward_actor(next(s for s in [*self.cfg.reward.scorers, *self.cfg.reward.heldout]
                                                if s.name == name))

    def update(self, batches: list[RolloutBatch], samples: list[int], advantages: list,
               minibatches: list[list[int]]) -> dict:
        """One learner update: an optimizer step per minibatch (positions into `samples`); the
        trajectory refs travel wrapped in a list, so each rank fetches only the batches its
        shards need. A dead rank raises LearnerFailure."""
        refs = [b.trajectory for b in batches]
        sizes = [len(b.prompts) for b in batches]
        per_rank = gather_learners([l.update.remote(refs, sizes, samples, advantages, minibatches)
                                    for l in self.learners], "update")
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

    def checksum(self) -> str:
        """Checksum of the weights the rollout workers hold now (the last sync's, or the base's)."""
        return self.pool.weights.checksum

    def probe(self, prompt: str) -> dict:
        """{rollout worker: digest of its velocity on a fixed input} (orchestrator/guards.py); a
        worker that died meanwhile is left out (the sync replaces it)."""
        out = {}
        for w, ref in [(w, w.probe.remote(prompt)) for w in self.pool.workers]:
            try:
                out[w._actor_id.hex()] = ray.get(ref)
            except WORKER_DIED:
                pass
        return out

    def health(self) -> dict:
        """For the metrics line: pool size, and workers replaced since the last call."""
        recovered, self.recovered = self.recovered + self.pool.take_recovered(), 0
        return {"rollout_workers": len(self.pool), "recovered_failures": recovered}

    def evaluate(self, prompts: list[str], seeds: list[int], preview_cols: int) -> tuple[dict[str, float], bytes]:
        """ODE samples on the rollout workers, scored by the reward workers and the held-out
        judges: ({scorer or judge: mean}, preview PNG)."""
        workers = self.pool.workers
        n = len(workers)
        parts = [(prompts[i * len(prompts) // n:(i + 1) * len(prompts) // n],
                  seeds[i * len(seeds) // n:(i + 1) * len(seeds) // n]) for i in range(n)]
        calls = [w.sample_ode.options(num_returns=2).remote(p, s, preview_cols if i == 0 else 0)
                 for i, (w, (p, s)) in enumerate(zip(workers, parts)) if p]
        batches = [RolloutBatch(images, None, p) for (images, _), (p, _) in zip(calls, [q for q in parts if q[0]])]
        rewards = self.score(batches, judges=True)
        preview = ray.get(calls[0][1]).get("preview_png", b"")
        return {name: float(np.mean(r)) for name, r in rewards.items()}, preview

    def save(self, path: str) -> None:
        gather_learners([l.save.remote(path) for l in self.learners], "checkpoint save")

    def load(self, path: str) -> None:
        gather_learners([l.load.remote(path) for l in self.learners], "checkpoint load")

    def workers(self) -> list[dict]:
        """Rows of the worker table (role, index, pid, node, version, counters, throughput)."""
        rows = []
        for role, actors, restarts in (("rollout", self.pool.workers, self.pool.restarts),
                                       ("reward", list(self.reward_workers.values()),
                                        [self.restarts[n] for n in self.reward_workers]),
                                       ("judge", list(self.judge_workers.values()),
                                        [self.restarts[n] for n in self.judge_workers]),
                                       ("learner", self.learners, [0] * len(self.learners))):  # a dead rank stops the job
            for i, ref in enumerate([a.info.remote() for a in actors]):
                try:
                    rows.append(worker_row(role, i, ray.get(ref), restarts[i]))
                except WORKER_DIED:
                    rows.append({"role": role, "index": i, "state": "dead", "restarts": restarts[i]})
        return rows

    def shutdown(self) -> None:
        rollout = self.pool.workers if self.pool is not None else self.starting
        for a in [*rollout, *self.reward_workers.values(), *self.judge_workers.values(), *self.learners]:
            ray.kill(a)
        if self.control is not None:
            ray.kill(self.control)
        if self.pg is not None:
            remove_placement_group(self.pg)


def merge_rank_stats(per_rank: list[dict]) -> dict:
    """One stats dict from the ranks' (orchestrator/metrics.py): loss and kl are each rank's
    share of a global mean, so they add; ratio statistics are chunk-weighted means, min / max;
    the gradient norm and the step count are global (the worst rank's norm is kept, a non-finite
    one first); nonfinite = every rank's non-finite losses + the steps with a non-finite norm."""
    total = sum(s["chunks"] for s in per_rank) or 1
    out = {k: sum(s[k] * s["chunks"] for s in per_rank) / total for k in ("clip_fraction", "ratio_mean", "approx_kl")}
    out["loss"] = sum(s["loss"] for s in per_rank)
    out["kl"] = sum(s["kl"] for s in per_rank)
    for key, count in (("ratio_mean_first", "first_chunks"), ("ratio_dev_later", "later_chunks")):
        n = sum(s[count] for s in per_rank)
        out[key] = sum(s[key] * s[count] for s in per_rank) / n if n else (1.0 if key == "ratio_mean_first" else 0.0)
    live = [s for s in per_rank if s["chunks"]]  # a rank without chunks reports 1.0 for both
    out["ratio_min"] = min((s["ratio_min"] for s in live), default=1.0)
    out["ratio_max"] = max((s["ratio_max"] for s in live), default=1.0)
    out["grad_norm"] = worst(s["grad_norm"] for s in per_rank)
    out["optimizer_steps"] = per_rank[0]["optimizer_steps"]
    out["nonfinite"] = sum(s["nonfinite_loss"] for s in per_rank) + max(s["nonfinite_grad"] for s in per_rank)
    out["learner_s"] = max(s["learner_s"] for s in per_rank)
    out["chunks"] = sum(s["chunks"] for s in per_rank)
    return out
