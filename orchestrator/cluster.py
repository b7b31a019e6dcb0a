"""The reward, learner and control actors, and the two phases that use them: score and update.

`replicas` reward workers per scorer (each a GPU fraction or CPUs; an iteration's images split
evenly among them by `shares`; one that dies is replaced), the learner ranks packed
in a placement group (a dead rank stops the job), the job's named control actor that
`raygrpo scale` talks to, and the rollout actors as one `Rollouts` group (orchestrator/
rollouts.py: their work, health, scaling and weight sync), which the driver loop drives
directly. On CPU every actor asks for the CPU resources its config names (0 by default, so
the demo packs on 2 cores) and sets its own torch threads. The driver holds only refs and
small dicts: images and trajectories move rollout -> reward / learner through the object store.
"""

from __future__ import annotations

import functools
import itertools
from pathlib import Path

import numpy as np
import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from learner.worker import LearnerWorker, worst
from orchestrator.actors import actor_env, actor_rows, learner_env
from orchestrator.config import Config
from orchestrator.control import CONTROL_NAMESPACE, ScaleControl, control_name
from orchestrator.errors import ActorFailed, UserError, remote_message
from orchestrator.faults import gather, gather_learners, started
from orchestrator.rollouts import RolloutBatch, Rollouts
from reward.worker import RewardWorker
from rollout.plan import RolloutPlan
from rollout.policy import policy_from_config
from rollout.worker import RolloutWorker


class Cluster:
    rollout_cls, reward_cls = RolloutWorker, RewardWorker  # the actor classes (tests inject faulty ones)
    rollouts_cls = Rollouts  # the rollout group (tests and benches inject subclasses)

    def __init__(self, cfg: Config, plan: RolloutPlan, run_dir: Path | None = None):
        self.cfg = cfg
        self.plan = plan
        self.rollouts = self.control = self.pg = None
        self.learners: list = []
        self.reward_actors: dict[str, list] = {}  # scorer name -> its replicas
        self.judge_actors: dict[str, list] = {}  # held-out evaluations only
        # reward actors replaced, per scorer or judge and replica
        self.restarts = {s.name: [0] * s.replicas for s in [*cfg.reward.scorers, *cfg.reward.heldout]}
        self.recovered = 0  # reward actors replaced since the last `health()`
        if not ray.is_initialized():  # as the first ray.remote would: join RAY_ADDRESS or start one
            ray.init()
        check_fits(cfg, ray.cluster_resources())  # before any actor: one that cannot fit would wait forever
        try:  # a failed start leaves no actor behind
            self.control = self._control_actor(run_dir) if run_dir is not None else None
            self._learner_group()
            self.reward_actors = {s.name: self._reward_replicas(s) for s in cfg.reward.scorers}
            self.judge_actors = {s.name: self._reward_replicas(s) for s in cfg.reward.heldout}
            # all actors start together; this returns once the rollout actors have
            self.rollouts = self.rollouts_cls(
                cfg, plan, self.learners, self.control, actor_cls=self.rollout_cls
            )
            started(self._loads())
            addr, port = ray.get(self.learners[0].rendezvous.remote())
            ray.get([a.setup.remote(addr, port) for a in self.learners])
        except BaseException:
            self.shutdown()
            raise

    # -- actors ----------------------------------------------------------------------------------
    def _loads(self) -> dict:
        """{label: (reward or learner actor, what it loads)}: for the message of one that cannot start."""
        loads = {
            f"reward worker {s.name!r}" + (f" replica {r}" if s.replicas > 1 else ""): (
                actor,
                f"reward.scorers {s.name!r} (path {s.path!r}, base {s.base!r})",
            )
            for s in self.cfg.reward.scorers
            for r, actor in enumerate(self.reward_actors[s.name])
        }
        model = f"model.path {self.cfg.model.path!r}"
        return loads | {f"learner rank {r}": (a, model) for r, a in enumerate(self.learners)}

    def _reward_replicas(self, scorer) -> list:
        return [self._reward_actor(scorer) for _ in range(scorer.replicas)]

    def _reward_actor(self, scorer):
        return (
            ray.remote(self.reward_cls)
            .options(
                num_cpus=scorer.num_cpus,
                num_gpus=scorer.num_gpus,
                runtime_env=actor_env(self.cfg.orchestrator.worker_niceness),
            )
            .remote(scorer)
        )

    def _control_actor(self, run_dir: Path):
        """The job's named actor (namespace `raygrpo`) that `raygrpo scale` finds and writes to."""
        name = control_name(run_dir)
        try:
            return (
                ray.remote(ScaleControl)
                .options(name=name, namespace=CONTROL_NAMESPACE, num_cpus=0)
                .remote(self.cfg.rollout.num_workers)
            )
        except ValueError as err:  # the name is taken
            raise UserError(
                f"another running job already uses run dir {run_dir} ({name}); "
                "give this run its own --run-dir"
            ) from err

    def _learner_group(self) -> None:
        """The learner ranks, packed in a placement group (set up by __init__ once all started)."""
        lc = self.cfg.learner
        bundle = {"CPU": max(lc.num_cpus, LEARNER_MIN_CPU)}
        if lc.num_gpus:
            bundle["GPU"] = lc.num_gpus
        self.pg = pg = placement_group([dict(bundle) for _ in range(lc.world_size)], strategy="PACK")
        ray.get(pg.ready())
        # no device here: each rank picks its own inside the actor (the driver may sit on a CPU-only head)
        factory = functools.partial(policy_from_config, self.cfg.model)
        self.learners = [
            ray.remote(LearnerWorker)
            .options(
                num_cpus=bundle["CPU"],
                num_gpus=lc.num_gpus,
                runtime_env=actor_env(self.cfg.orchestrator.worker_niceness, **learner_env(lc.num_gpus)),
                scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=rank),
            )
            .remote(factory, lc, rank, lc.world_size)
            for rank in range(lc.world_size)
        ]

    # -- the phases ----------------------------------------------------------------------------
    def score(self, batches: list[RolloutBatch], judges: bool = False) -> dict[str, np.ndarray]:
        """Rewards [B] per scorer (and per held-out judge with `judges`), in batch order. Each
        scorer's replicas score even shares of the images (`shares`: rows of the rollout batches;
        Ray resolves each image ref in the reward actor, which keeps its rows). A reward actor
        that dies is replaced and its rows are scored again."""
        names = [*self.reward_actors, *(self.judge_actors if judges else {})]
        sizes = [len(b.prompts) for b in batches]
        parts = {name: shares(sizes, len(self._replicas_of(name))) for name in names}
        keys = [
            (name, r, i, start, stop)
            for name in names
            for r, rows in enumerate(parts[name])
            for i, start, stop in rows
        ]
        asked = {}  # key -> the reward actor asked

        def ask(key, died=None):
            name, r, i, start, stop = key
            if died is not None and asked[key] == self._replicas_of(name)[r]:  # the first to see this death
                self._replace_scorer(name, r)
            asked[key] = self._replicas_of(name)[r]
            return asked[key].score_rows.remote(
                batches[i].images, list(batches[i].prompts[start:stop]), start
            )

        def failed(key, err) -> ActorFailed:  # the scorer raised: never turned into a reward
            name, r, i, start, stop = key
            who = f"{name!r}" + (f" replica {r}" if len(parts[name]) > 1 else "")
            rows = "the" if stop - start == sizes[i] else f"rows {start}-{stop - 1} of the"
            return ActorFailed(
                f"reward worker {who} failed scoring {rows} {sizes[i]} images of rollout batch {i}: "
                f"{remote_message(err)}"
            )

        rewards = gather({key: ask(key) for key in keys}, ask, failed)
        for key in keys:
            if len(rewards[key]) != key[4] - key[3]:
                raise ActorFailed(
                    f"reward worker {key[0]!r} returned {len(rewards[key])} rewards for the "
                    f"{key[4] - key[3]} samples of rollout batch {key[2]} it was given"
                )
        # keys run through each scorer's replicas in order, and the replicas' shares in batch order
        return {name: np.concatenate([rewards[k] for k in keys if k[0] == name]) for name in names}

    def _replicas_of(self, name: str) -> list:
        return self.reward_actors[name] if name in self.reward_actors else self.judge_actors[name]

    def _replace_scorer(self, name: str, replica: int) -> None:
        """A fresh reward actor for replica `replica` of scorer or judge `name` (frozen: nothing to
        hand over)."""
        self.recovered += 1
        self.restarts[name][replica] += 1
        ray.kill(self._replicas_of(name)[replica])
        self._replicas_of(name)[replica] = self._reward_actor(
            next(s for s in [*self.cfg.reward.scorers, *self.cfg.reward.heldout] if s.name == name)
        )

    def update(
        self, batches: list[RolloutBatch], samples: list[int], advantages: list, minibatches: list[list[int]]
    ) -> dict:
        """One learner update: an optimizer step per minibatch (positions into `samples`); the
        trajectory refs travel wrapped in a list, so each rank fetches only the batches its
        shards need. A dead rank raises LearnerFailure."""
        refs = [b.trajectory for b in batches]
        sizes = [len(b.prompts) for b in batches]
        per_rank = gather_learners(
            [
                learner.update.remote(refs, sizes, samples, advantages, minibatches)
                for learner in self.learners
            ],
            "update",
        )
        return merge_rank_stats(per_rank)

    def save(self, path: str) -> None:
        gather_learners([learner.save.remote(path) for learner in self.learners], "checkpoint save")

    def load(self, path: str) -> None:
        gather_learners([learner.load.remote(path) for learner in self.learners], "checkpoint load")

    # -- reporting -----------------------------------------------------------------------------
    def health(self) -> dict:
        """For the metrics line: reward actors replaced since the last call."""
        recovered, self.recovered = self.recovered, 0
        return {"recovered_failures": recovered}

    def worker_rows(self) -> list[dict]:
        """The reward, judge and learner rows of the worker table (a dead learner rank stops the job)."""
        rows = []
        for role, actors in (("reward", self.reward_actors), ("judge", self.judge_actors)):
            replicas = [(a, self.restarts[name][r]) for name in actors for r, a in enumerate(actors[name])]
            rows += actor_rows(role, [a for a, _ in replicas], [n for _, n in replicas])
        return rows + actor_rows("learner", self.learners, [0] * len(self.learners))

    def shutdown(self) -> None:
        if self.rollouts is not None:
            self.rollouts.shutdown()
        replicas = [
            a for actors in [*self.reward_actors.values(), *self.judge_actors.values()] for a in actors
        ]
        for a in [*replicas, *self.learners]:
            ray.kill(a)
        if self.control is not None:
            ray.kill(self.control)
        if self.pg is not None:
            remove_placement_group(self.pg)


def shares(sizes: list[int], replicas: int) -> list[list[tuple[int, int, int]]]:
    """Split the rows of batches of `sizes` into `replicas` contiguous, even shares: per replica,
    its (batch, start, stop) slices in batch order. Replica r takes the rows [r·n/R, (r+1)·n/R) of
    the n rows in batch order, so shares differ by at most one image; with one replica, every
    batch whole.

        shares([6, 6], 3) == [[(0, 0, 4)], [(0, 4, 6), (1, 0, 2)], [(1, 2, 6)]]
    """
    starts, total = [0, *itertools.accumulate(sizes)], sum(sizes)
    out = []
    for r in range(replicas):
        first, last = r * total // replicas, (r + 1) * total // replicas  # this share: rows [first, last)
        out.append(
            [
                (i, max(first, starts[i]) - starts[i], min(last, starts[i + 1]) - starts[i])
                for i in range(len(sizes))
                if max(first, starts[i]) < min(last, starts[i + 1])
            ]
        )
    return out


LEARNER_MIN_CPU = 0.001  # a placement-group bundle needs some resource; a CPU-less rank takes this


def resource_demand(cfg: Config) -> dict[str, list[tuple[str, float]]]:
    """{'CPU' | 'GPU': [(the fields that ask, amount)]}: what the run's actors reserve at start."""
    r, lc = cfg.rollout, cfg.learner
    demand: dict[str, list[tuple[str, float]]] = {"CPU": [], "GPU": []}
    for res, rollout_each, learner_each in (
        ("CPU", r.num_cpus, max(lc.num_cpus, LEARNER_MIN_CPU)),
        ("GPU", r.num_gpus, lc.num_gpus),
    ):
        low = res.lower()
        demand[res] += [
            (
                f"rollout.num_workers {r.num_workers} × rollout.num_{low}s {rollout_each:g}",
                r.num_workers * rollout_each,
            ),
            (
                f"learner.world_size {lc.world_size} × learner.num_{low}s {getattr(lc, f'num_{low}s'):g}"
                + (f" (at least {LEARNER_MIN_CPU:g} a rank)" if res == "CPU" else ""),
                lc.world_size * learner_each,
            ),
        ]
        for section, scorers in (("scorers", cfg.reward.scorers), ("heldout", cfg.reward.heldout)):
            demand[res] += [
                (
                    f"reward.{section} {s.name!r} "
                    + (f"replicas {s.replicas} × " if s.replicas > 1 else "")
                    + f"num_{low}s {getattr(s, f'num_{low}s'):g}",
                    s.replicas * getattr(s, f"num_{low}s"),
                )
                for s in scorers
            ]
    return demand


def check_fits(cfg: Config, resources: dict) -> None:
    """Every actor of a run lives as long as the run, so their reservations must fit the cluster
    together; an actor that does not fit would wait for resources forever (Ray does not say)."""
    for res, asks in resource_demand(cfg).items():
        total, have = sum(a for _, a in asks), float(resources.get(res, 0))
        if total > have + 1e-9:
            named = ", ".join(f"{field} ({amount:g})" for field, amount in asks if amount > 0)
            raise UserError(
                f"the run's actors reserve {total:g} {res} but the Ray cluster has {have:g}: {named}. "
                f"An actor that does not fit would wait forever; lower those fields, or start the "
                f"run on a cluster with more {res}s"
            )


def merge_rank_stats(per_rank: list[dict]) -> dict:
    """One stats dict from the ranks' (orchestrator/metrics.py): loss and kl are each rank's
    share of a global mean, so they add; ratio statistics are chunk-weighted means, min / max;
    the gradient norm and the step count are global (the worst rank's norm is kept, a non-finite
    one first); nonfinite = every rank's non-finite losses + the steps with a non-finite norm."""
    total = sum(s["chunks"] for s in per_rank) or 1
    out = {
        k: sum(s[k] * s["chunks"] for s in per_rank) / total
        for k in ("clip_fraction", "ratio_mean", "approx_kl")
    }
    out["loss"] = sum(s["loss"] for s in per_rank)
    out["kl"] = sum(s["kl"] for s in per_rank)
    for key, count in (("ratio_mean_first", "first_chunks"), ("ratio_dev_later", "later_chunks")):
        n = sum(s[count] for s in per_rank)
        out[key] = (
            sum(s[key] * s[count] for s in per_rank) / n if n else (1.0 if key == "ratio_mean_first" else 0.0)
        )
    live = [s for s in per_rank if s["chunks"]]  # a rank without chunks reports 1.0 for both
    out["ratio_min"] = min((s["ratio_min"] for s in live), default=1.0)
    out["ratio_max"] = max((s["ratio_max"] for s in live), default=1.0)
    out["grad_norm"] = worst(s["grad_norm"] for s in per_rank)
    out["optimizer_steps"] = per_rank[0]["optimizer_steps"]
    out["nonfinite"] = sum(s["nonfinite_loss"] for s in per_rank) + max(s["nonfinite_grad"] for s in per_rank)
    out["learner_s"] = max(s["learner_s"] for s in per_rank)
    out["chunks"] = sum(s["chunks"] for s in per_rank)
    return out
