"""Weight sync, driver side: learner rank 0's trainable weights into every rollout actor, each
version checked by checksum. Used by orchestrator/rollouts.py alone.

    object_store  rank 0 returns its weights once (one object in the store); every worker loads
                  that ref. The CPU path, and the default without GPUs.
    broadcast     rank 0 and the rollout actors form a collective group (NCCL on GPUs, gloo on
                  CPU), built once and rebuilt when the actors change; weights travel in buckets
                  of `rollout.sync_bucket_mb` (only the trainable ones: LoRA adapters when
                  training LoRA). The default when rollout actors and learner have GPUs.

A worker that joins between versions (scale-up, or the replacement of a dead one) gets the
current version through the object store: the held ref, or in broadcast mode one export
from a surviving rollout worker (the learner may be mid-update in async mode, its weights
already newer). Every install ends with the same check: each worker's checksum equals the
learner's for that version.
"""

from __future__ import annotations

import ray

from orchestrator.config import Config
from orchestrator.faults import WORKER_DIED, gather_learners


def sync_mode(cfg: Config) -> str:
    mode = cfg.rollout.weight_sync
    if mode == "auto":
        return "broadcast" if cfg.rollout.num_gpus > 0 and cfg.learner.num_gpus > 0 else "object_store"
    return mode


class WeightMismatch(RuntimeError):
    pass


class WeightSync:
    def __init__(self, cfg: Config, learners: list, initial_checksum: str):
        self.mode = sync_mode(cfg)
        self.backend = "nccl" if cfg.learner.num_gpus > 0 and cfg.rollout.num_gpus > 0 else "gloo"
        self.bucket_bytes = int(cfg.rollout.sync_bucket_mb * 2**20)
        self.timeout_s = cfg.rollout.sync_timeout_s
        self.learners = learners
        self.version, self.checksum = 0, initial_checksum
        self.ref = None  # object_store: the current version's weights
        self.members: list = []  # broadcast: the actors the group was built with, in rank order
        self.plan_ref = None

    # -- one version into every worker ---------------------------------------------------------
    def install(self, version: int, actors: list) -> tuple[str, list[int]]:
        """Publish the learner's weights as `version` and load them into `actors`.
        Returns (checksum, indices of actors that died on the way; the caller replaces them)."""
        if self.mode == "broadcast":
            return self._install_broadcast(version, actors)
        published = [learner.publish.options(num_returns=2).remote() for learner in self.learners]
        state_ref, checksum_ref = published[0]
        gather_learners([c for _, c in published], "sync")  # other ranks join the (ZeRO-3) gather
        self.version, self.checksum, self.ref = version, ray.get(checksum_ref), state_ref
        got = [a.load_weights.remote(state_ref, version) for a in actors]
        return self.checksum, self._verify(got, version)

    def _install_broadcast(self, version: int, actors: list) -> tuple[str, list[int]]:
        if actors != self.members:
            dead = self._dead([a.info.remote() for a in actors])  # a dead member would stall the store
            if dead:
                return self.checksum, dead
            self._build_group(actors)
        sent = [learner.broadcast_weights.remote(self.plan_ref) for learner in self.learners]
        got = [a.receive_weights.remote(self.plan_ref, version) for a in actors]
        dead = self._dead(got)
        if dead:  # the collective lost a member: rebuild without it once the caller replaced it
            self.members = []
            ray.wait(sent, num_returns=len(sent), timeout=self.timeout_s)
            return self.checksum, dead
        self.version, self.checksum, self.ref = version, gather_learners(sent, "sync")[0], None
        return self.checksum, self._verify(got, version)

    def _build_group(self, actors: list) -> None:
        addr, port = ray.get(self.learners[0].rendezvous.remote())
        world = len(actors) + 1
        plans = [
            learner.join_weight_group.remote(
                addr, port, world, self.backend, self.timeout_s, self.bucket_bytes
            )
            for learner in self.learners
        ]
        joined = [
            w.join_weight_group.remote(addr, port, rank + 1, world, self.backend, self.timeout_s)
            for rank, w in enumerate(actors)
        ]
        ray.get(joined)
        self.plan_ref = ray.put(gather_learners(plans, "building the weight group")[0])  # rank 0's plan
        self.members = list(actors)

    # -- a worker that joins between versions ----------------------------------------------------
    def provide(self, actor, survivors: list) -> None:
        """Give a new worker the current version (see module docstring) and verify it."""
        source = self.ref
        if source is None and self.version > 0:  # broadcast mode: copy a worker that has it
            source = survivors[0].export_weights.remote() if survivors else self._learner_copy()
        if source is not None:
            got = actor.load_weights.remote(source, self.version)
        else:  # version 0: the base weights every worker loaded from disk
            got = actor.checksum.remote()
        if self._verify([got], self.version):
            raise WeightMismatch(f"a new rollout worker died while receiving weights v{self.version}")
        self.members = []  # broadcast: the group no longer matches the actors

    def _learner_copy(self):
        published = [learner.publish.options(num_returns=2).remote() for learner in self.learners]
        gather_learners([c for _, c in published], "sync")
        return published[0][0]

    def _verify(self, got: list, version: int) -> list[int]:
        """Indices of dead actors; raises if a live one holds other weights than the learner."""
        dead, bad = [], []
        for i, ref in enumerate(got):
            try:
                if ray.get(ref) != self.checksum:
                    bad.append(i)
            except WORKER_DIED:
                dead.append(i)
        if bad:
            raise WeightMismatch(
                f"weight sync v{version}: rollout workers {bad} hold weights that differ from "
                f"the learner's (checksum {self.checksum}); see rollout.weight_sync"
            )
        return dead

    @staticmethod
    def _dead(refs: list) -> list[int]:
        dead = []
        for i, ref in enumerate(refs):
            try:
                ray.get(ref)
            except WORKER_DIED:
                dead.append(i)
            except Exception:  # the collective broke because a peer died; judged via `dead`
                pass
        return dead
