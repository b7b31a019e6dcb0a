"""LocalCluster: the phases of `Cluster`, run by the same worker classes in this process.

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
from orchestrator.cluster import RolloutBatch, merge_rank_stats, split_groups, worker_row
from orchestrator.config import Config
from orchestrator.errors import ActorFailed
from orchestrator.pool import apply_report
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


class LocalCluster:
    rollout_cls, reward_cls = RolloutWorker, RewardWorker  # as in Cluster (tests inject faulty ones)

    def __init__(self, cfg: Config, plan: RolloutPlan, run_dir=None):
        if cfg.learner.world_size != 1:
            raise ValueError("LocalCluster runs one learner rank; set learner.world_size: 1")
        self.cfg = cfg
        self.plan = plan
        self.rollout_threads = functools.partial(torch_threads, cfg.rollout.torch_threads)
        self.learner_threads = functools.partial(torch_threads, cfg.learner.torch_threads)
        self.rollout_workers = [self.rollout_cls(cfg.model, cfg.rollout, plan, cfg.orchestrator.seed, i,
                                                 chunk_selector(cfg.learner)) for i in range(cfg.rollout.num_workers)]
        self.reward_workers = {s.name: self.reward_cls(s) for s in cfg.reward.scorers}
        self.judge_workers = {s.name: self.reward_cls(s) for s in cfg.reward.heldout}
        factory = functools.partial(policy_from_config, cfg.model)  # the learner picks its device
        self.learner = LearnerWorker(factory, cfg.learner, 0, 1)
        self.learner.setup("127.0.0.1", free_port())

    def launch(self, groups, iteration: int, preview: bool) -> list[RolloutBatch]:
        g = self.cfg.rollout.group_size
        batches = []
        for i, (worker, part) in enumerate(zip(self.rollout_workers, split_groups(groups, len(self.rollout_workers)))):
            if part:
                with self.rollout_threads():
                    images, traj, info = worker.rollout(part, iteration, preview and i == 0)
                batches.append(apply_report(RolloutBatch(images, traj, [], groups=part), info, self.plan, g))
        return batches

    def collect(self, batches: list[RolloutBatch]) -> list[RolloutBatch]:
        return batches

    def rollout(self, groups, iteration: int, preview: bool) -> list[RolloutBatch]:
        return self.launch(groups, iteration, preview)

    def score(self, batches) -> dict[str, np.ndarray]:
        out = {}
        for name, w in self.reward_workers.items():
            parts = []
            for i, b in enumerate(batches):
                try:
                    parts.append(w.score(b.images, b.prompts))
                except Exception as err:  # as Cluster.score: a scorer error stops the run, named
                    raise ActorFailed(f"reward worker {name!r} failed scoring the {len(b.prompts)} images of rollout "
                                      f"batch {i}: {type(err).__name__}: {err}") from err
            out[name] = np.concatenate(parts)
        return out

    def update(self, batches, samples, advantages, minibatches) -> dict:
        trajs = [b.trajectory for b in batches]
        with self.learner_threads():
            stats = self.learner.update(trajs, [len(b.prompts) for b in batches], samples, advantages, minibatches)
        return merge_rank_stats([stats])

    def sync(self, version: int) -> str:
        with self.learner_threads():
            state, checksum = self.learner.publish()
        with self.rollout_threads():
            got = [w.load_weights(state, version) for w in self.rollout_workers]
        if any(c != checksum for c in got):
            raise RuntimeError(f"weight sync v{version}: a rollout worker differs from the learner")
        return checksum

    def checksum(self) -> str:
        return self.rollout_workers[0].checksum()

    def probe(self, prompt: str) -> dict:
        with self.rollout_threads():
            return {i: w.probe(prompt) for i, w in enumerate(self.rollout_workers)}

    def rescale(self) -> None:
        pass

    def health(self) -> dict:
        return {"rollout_workers": len(self.rollout_workers), "recovered_failures": 0}

    def evaluate(self, prompts, seeds, preview_cols: int):
        with self.rollout_threads():
            images, info = self.rollout_workers[0].sample_ode(prompts, seeds, preview_cols)
        scorers = {**self.reward_workers, **self.judge_workers}
        means = {name: float(np.mean(w.score(images, prompts))) for name, w in scorers.items()}
        return means, info.get("preview_png", b"")

    def save(self, path: str) -> None:
        self.learner.save(path)

    def load(self, path: str) -> None:
        self.learner.load(path)

    def workers(self) -> list[dict]:
        rows = [worker_row("rollout", i, w.info()) for i, w in enumerate(self.rollout_workers)]
        rows += [worker_row("reward", i, w.info()) for i, w in enumerate(self.reward_workers.values())]
        rows += [worker_row("judge", i, w.info()) for i, w in enumerate(self.judge_workers.values())]
        return rows + [worker_row("learner", 0, self.learner.info())]

    def shutdown(self) -> None:
        pass
