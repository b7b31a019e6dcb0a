"""The only place that makes Ray actors and placement groups.

Rollout workers (one GPU each on clusters), one reward worker per scorer (a GPU fraction),
and the learner ranks packed in a placement group. On CPU every actor asks for the CPU
resources its config names (0 by default, so the demo packs on 2 cores) and sets its own
torch threads. The driver holds only refs and small dicts: images and trajectories move
rollout -> reward / learner through the object store.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from learner.worker import LearnerWorker
from orchestrator.config import Config
from reward.worker import RewardWorker
from rollout.plan import RolloutPlan
from rollout.policy import policy_from_config
from rollout.worker import RolloutWorker, pick_device


@dataclass
class RolloutBatch:
    """What the driver keeps of one worker's rollout: refs, and the small facts it planned."""

    images: ray.ObjectRef
    trajectory: ray.ObjectRef | None
    prompts: list[str]
    group_ids: list[int] = field(default_factory=list)  # prompt group of each sample
    info: dict = field(default_factory=dict)
    columns: list[int] = field(default_factory=list)  # advantage column of each sample (E-GRPO), else the group


def split_groups(groups: list, parts: int) -> list[list]:
    """Whole groups, contiguous, near-equal, over `parts` workers."""
    n = len(groups)
    return [groups[i * n // parts:(i + 1) * n // parts] for i in range(parts)]


def worker_row(role: str, index: int, info: dict) -> dict:
    """One row of the worker table (status.json `workers`, the dashboard): the actor's own
    info() plus its busy throughput (images it generated, scored or trained on, per second
    spent working) and its restart count (0: actors are not restarted yet)."""
    seconds = info.get("seconds") or 0.0
    throughput = info.get("images", 0) / seconds if seconds > 0 else None
    return {"role": role, "index": index, "state": "alive", "restarts": 0, **info, "images_per_s": throughput}


def learner_env(num_gpus: float) -> dict:
    return {} if num_gpus > 0 else {"DS_ACCELERATOR": "cpu"}


class Cluster:
    def __init__(self, cfg: Config, plan: RolloutPlan):
        self.cfg = cfg
        self.plan = plan
        self.rollout_workers = [self._rollout_actor(i) for i in range(cfg.rollout.num_workers)]
        self.reward_workers = {
            s.name: ray.remote(RewardWorker).options(num_cpus=s.num_cpus, num_gpus=s.num_gpus, name=None).remote(s)
            for s in cfg.reward.scorers
        }
        self.learners, self.pg = self._learner_group()

    def _rollout_actor(self, index: int):
        r = self.cfg.rollout
        remote = ray.remote(RolloutWorker).options(num_cpus=r.num_cpus, num_gpus=r.num_gpus)
        return remote.remote(self.cfg.model, r, self.plan, self.cfg.orchestrator.seed, index)

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
                runtime_env={"env_vars": learner_env(lc.num_gpus)},
                scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=rank),
            ).remote(factory, lc, rank, lc.world_size)
            for rank in range(lc.world_size)
        ]
        addr, port = ray.get(actors[0].rendezvous.remote())
        ray.get([a.setup.remote(addr, port) for a in actors])
        return actors, pg

    # -- the phases ----------------------------------------------------------------------------
    def rollout(self, groups: list[tuple[int, str]], iteration: int, preview: bool) -> list[RolloutBatch]:
        parts = split_groups(groups, len(self.rollout_workers))
        g = self.cfg.rollout.group_size
        members = self.plan.members_per_group(g)
        batches = []
        for i, (worker, part) in enumerate(zip(self.rollout_workers, parts)):
            if not part:
                continue
            images, traj, info = worker.rollout.options(num_returns=3).remote(part, iteration, preview and i == 0)
            batches.append(RolloutBatch(images, traj, [p for _, p in part for _ in range(members)],
                                        [gid for gid, _ in part for _ in range(members)], info,
                                        [self.plan.column_label(gid, m, g) for gid, _ in part for m in range(members)]))
        infos = ray.get([b.info for b in batches])  # small dicts: timings, versions
        for b, info in zip(batches, infos):
            b.info = info
        return batches

    def score(self, batches: list[RolloutBatch]) -> dict[str, np.ndarray]:
        """Rewards [B] per scorer, in batch order; Ray resolves each image ref in the reward worker."""
        refs = {name: [w.score.remote(b.images, b.prompts) for b in batches] for name, w in self.reward_workers.items()}
        flat = ray.get([r for rs in refs.values() for r in rs])
        out, k = {}, 0
        for name, rs in refs.items():
            out[name] = np.concatenate(flat[k:k + len(rs)])
            k += len(rs)
        return out

    def update(self, batches: list[RolloutBatch], samples: list[int], active: list[bool], advantages: list[float]) -> dict:
        """One learner update; the trajectory refs travel wrapped in a list, so each rank
        fetches only the batches its shard needs."""
        refs = [b.trajectory for b in batches]
        sizes = [len(b.prompts) for b in batches]
        per_rank = ray.get([l.update.remote(refs, sizes, samples, active, advantages) for l in self.learners])
        return merge_rank_stats(per_rank)

    def sync(self, version: int) -> str:
        """Publish rank 0's weights once (one object), install them in every rollout worker,
        and check that every worker now holds exactly the learner's weights."""
        published = [l.publish.options(num_returns=2).remote() for l in self.learners]
        state_ref, checksum_ref = published[0]
        ray.get([c for _, c in published[1:]])  # other ranks join the (ZeRO-3) gather
        checksum = ray.get(checksum_ref)
        got = ray.get([w.load_weights.remote(state_ref, version) for w in self.rollout_workers])
        bad = [i for i, c in enumerate(got) if c != checksum]
        if bad:
            raise RuntimeError(f"weight sync v{version}: rollout workers {bad} hold weights that differ from the learner's")
        return checksum

    def evaluate(self, prompts: list[str], seeds: list[int], preview_cols: int) -> tuple[dict[str, float], bytes]:
        """ODE samples on the rollout workers, scored by the reward workers: ({scorer: mean}, preview PNG)."""
        n = len(self.rollout_workers)
        parts = [(prompts[i * len(prompts) // n:(i + 1) * len(prompts) // n],
                  seeds[i * len(seeds) // n:(i + 1) * len(seeds) // n]) for i in range(n)]
        calls = [w.sample_ode.options(num_returns=2).remote(p, s, preview_cols if i == 0 else 0)
                 for i, (w, (p, s)) in enumerate(zip(self.rollout_workers, parts)) if p]
        batches = [RolloutBatch(images, None, p) for (images, _), (p, _) in zip(calls, [q for q in parts if q[0]])]
        rewards = self.score(batches)
        preview = ray.get(calls[0][1]).get("preview_png", b"")
        return {name: float(np.mean(r)) for name, r in rewards.items()}, preview

    def save(self, path: str) -> None:
        ray.get([l.save.remote(path) for l in self.learners])

    def load(self, path: str) -> None:
        ray.get([l.load.remote(path) for l in self.learners])

    def workers(self) -> list[dict]:
        """Rows of the worker table (role, index, pid, node, version, counters, throughput)."""
        rows = []
        for role, actors in (("rollout", self.rollout_workers), ("reward", list(self.reward_workers.values())),
                             ("learner", self.learners)):
            for i, info in enumerate(ray.get([a.info.remote() for a in actors])):
                rows.append(worker_row(role, i, info))
        return rows

    def shutdown(self) -> None:
        for a in [*self.rollout_workers, *self.reward_workers.values(), *self.learners]:
            ray.kill(a)
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
