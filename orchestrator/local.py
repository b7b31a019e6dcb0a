"""LocalCluster and LocalRollouts: `Cluster` and `Rollouts`, run by the same worker classes in
this process.

No Ray, no object store: the readable reference the Ray system is tested against (same
metrics, same weights) and the baseline of bench/overhead.py. One learner rank only; a
launch runs to completion at once (so async mode computes what the Ray async loop does,
without the overlap); no live scaling, no worker deaths to recover. Each worker's calls run
with that worker's torch thread count, as in its own Ray process: intra-op thread counts
change the order of float sums, and the reference must compute what the actors compute.
"""

from __future__ import annotations

import contextlib
import functools

import numpy as np
import torch

from learner.config import chunk_selector
from learner.engine import free_port
from learner.worker import LearnerWorker
from orchestrator.actors import worker_row
from orchestrator.cluster import merge_rank_stats
from orchestrator.config import Config
from orchestrator.errors import ActorFailed
from orchestrator.rollouts import RolloutBatch, RolloutSchedule, apply_report, split_groups
from reward.worker import RewardWorker
from rollout.plan import RolloutPlan
from rollout.policy import policy_from_config
from rollout.worker import RolloutWorker


@contextlib.contextmanager
def torch_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class LocalRollouts(RolloutSchedule):
    """The interface of `Rollouts` over rollout workers in this process ("actors" here too)."""

    def __init__(self, cfg: Config, plan: RolloutPlan, publish, actor_cls=RolloutWorker):
        super().__init__(cfg)
        self.plan, self.publish = plan, publish  # publish() -> (the learner's weights, their checksum)
        self.threads = functools.partial(torch_threads, cfg.rollout.torch_threads)
        self.actors = [
            actor_cls(cfg.model, cfg.rollout, plan, cfg.orchestrator.seed, i, chunk_selector(cfg.learner))
            for i in range(cfg.rollout.num_workers)
        ]

    def _launch(self, groups, iteration: int, preview: bool) -> list[RolloutBatch]:
        g = self.cfg.rollout.group_size
        batches = []
        for i, (actor, part) in enumerate(zip(self.actors, split_groups(groups, len(self.actors)))):
            if part:
                with self.threads():
                    images, trajectory, info = actor.rollout(part, iteration, preview and i == 0)
                batches.append(apply_report(part, images, trajectory, info, self.plan, g, iteration))
        return batches

    def _collect(self, batches: list[RolloutBatch]) -> list[RolloutBatch]:
        return batches

    def sample_ode(self, prompts: list[str], seeds: list[int], preview_cols: int) -> tuple[list, bytes]:
        """As Rollouts.sample_ode, all prompts on actor 0."""
        with self.threads():
            images, info = self.actors[0].sample_ode(prompts, seeds, preview_cols)
        batch = RolloutBatch(images=images, trajectory=None, prompts=tuple(prompts))
        return [batch], info.get("preview_png", b"")

    def sync(self, version: int) -> str:
        state, checksum = self.publish()
        with self.threads():
            got = [a.load_weights(state, version) for a in self.actors]
        if any(c != checksum for c in got):
            raise RuntimeError(f"weight sync v{version}: a rollout worker differs from the learner")
        return checksum

    @property
    def checksum(self) -> str:
        return self.actors[0].checksum()

    def probe(self, prompt: str) -> dict:
        with self.threads():
            return {i: a.probe(prompt) for i, a in enumerate(self.actors)}

    def rescale(self) -> None:
        pass

    def health(self) -> dict:
        return {"rollout_workers": len(self.actors), "recovered_failures": 0}

    def worker_rows(self) -> list[dict]:
        return [worker_row("rollout", i, a.info()) for i, a in enumerate(self.actors)]

    def shutdown(self) -> None:
        pass


class LocalCluster:
    rollout_cls, reward_cls = RolloutWorker, RewardWorker  # as in Cluster (tests inject faulty ones)

    def __init__(self, cfg: Config, plan: RolloutPlan, run_dir=None):
        if cfg.learner.world_size != 1:
            raise ValueError("LocalCluster runs one learner rank; set learner.world_size: 1")
        self.cfg = cfg
        self.plan = plan
        self.learner_threads = functools.partial(torch_threads, cfg.learner.torch_threads)
        self.rollouts = LocalRollouts(cfg, plan, self.publish, actor_cls=self.rollout_cls)
        self.reward_actors = {s.name: self.reward_cls(s) for s in cfg.reward.scorers}
        self.judge_actors = {s.name: self.reward_cls(s) for s in cfg.reward.heldout}
        factory = functools.partial(policy_from_config, cfg.model)  # the learner picks its device
        self.learner = LearnerWorker(factory, cfg.learner, 0, 1)
        self.learner.setup("127.0.0.1", free_port())

    def publish(self) -> tuple[dict, str]:
        """The learner's trainable weights and their checksum (LocalRollouts.sync loads them)."""
        with self.learner_threads():
            return self.learner.publish()

    def score(self, batches: list[RolloutBatch], judges: bool = False) -> dict[str, np.ndarray]:
        out = {}
        for name, actor in {**self.reward_actors, **(self.judge_actors if judges else {})}.items():
            parts = []
            for i, b in enumerate(batches):
                try:
                    parts.append(actor.score(b.images, list(b.prompts)))
                except Exception as err:  # as Cluster.score: a scorer error stops the run, named
                    raise ActorFailed(
                        f"reward worker {name!r} failed scoring the {len(b.prompts)} images of rollout "
                        f"batch {i}: {type(err).__name__}: {err}"
                    ) from err
            out[name] = np.concatenate(parts)
        return out

    def update(self, batches, samples, advantages, minibatches) -> dict:
        trajectories = [b.trajectory for b in batches]
        with self.learner_threads():
            stats = self.learner.update(
                trajectories, [len(b.prompts) for b in batches], samples, advantages, minibatches
            )
        return merge_rank_stats([stats])

    def save(self, path: str) -> None:
        self.learner.save(path)

    def load(self, path: str) -> None:
        self.learner.load(path)

    def health(self) -> dict:
        return {"recovered_failures": 0}

    def worker_rows(self) -> list[dict]:
        rows = [worker_row("reward", i, a.info()) for i, a in enumerate(self.reward_actors.values())]
        rows += [worker_row("judge", i, a.info()) for i, a in enumerate(self.judge_actors.values())]
        return rows + [worker_row("learner", 0, self.learner.info())]

    def shutdown(self) -> None:
        pass
