"""The rollout pool: the rollout actors, the batches they have in flight, live resizing, and
the re-run of a dead worker's batch.

    batches = pool.launch(groups, iteration, preview)   # whole groups over the workers; returns at once
    batches = pool.collect(batches)                     # waits; a batch whose worker died is re-run
    pool.install(version)                               # settle, then new weights into every worker
    pool.resize(n)                                      # between iterations (`raygrpo scale`)

Recovery re-runs a batch whole (same groups, same iteration, hence the same seed-derived
noise) on the replacement of its dead worker, which first receives the weights the batch
started with: weights change only in `install`, after every launched batch has finished. A
recovered iteration therefore trains on exactly the samples an undisturbed one would, each
planned group once.

What the driver then counts and scores follows what each worker *reported* it rolled out
(`apply_report`), not the plan: a group a worker lost or returned twice shows in
`groups_completed` (orchestrator/guards.py), and a copy is never trained twice.

Work units (`rollout.units_per_worker` K): the groups are cut into K·R contiguous units (one
batch each) for R workers. Each idle worker gets one unit; the rest wait in `queue` and are
dealt, oldest launch first, to whichever worker finishes a unit — while the driver waits in
`collect` — so a slow worker runs fewer units and the fast ones take the rest (work
stealing). A sample's noise derives from (run seed, iteration, group id), never from the
worker, so which worker runs a unit changes no sample: K > 1 adds no bias. Units are dealt
only inside `collect`: in async mode a worker that finishes its unit during the update waits
for the next `collect` (K = 1 keeps the previous overlap exactly).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import ray

from orchestrator.faults import MAX_RETRIES, gather
from orchestrator.weights import WeightSync
from rollout.plan import RolloutPlan


@dataclass
class RolloutBatch:
    """What the driver keeps of one worker's rollout: refs, and the small facts it planned."""

    images: ray.ObjectRef
    trajectory: ray.ObjectRef | None
    prompts: list[str]
    group_ids: list[int] = field(default_factory=list)  # prompt group of each sample
    info: dict = field(default_factory=dict)  # timings, policy_version, groups: filled in by `collect`
    columns: list[int] = field(default_factory=list)  # advantage column of each sample (E-GRPO), else the group
    groups: list[tuple[int, str]] = field(default_factory=list)  # (group id, prompt): what a re-run needs
    iteration: int = 0
    preview: bool = False
    version: int = 0  # weights version it was launched with
    worker: Any = None  # the actor running it
    info_ref: ray.ObjectRef | None = None  # while in flight


def apply_report(b: RolloutBatch, info: dict, plan: RolloutPlan, group_size: int) -> RolloutBatch:
    """Fill `b` from its worker's report: info["groups"] lists the groups it rolled out, in the
    order of its images; per-sample prompts, group ids and advantage columns follow it."""
    prompts = dict(b.groups) if b.groups else {g: p for g, p in zip(b.group_ids, b.prompts)}
    unknown = [g for g in info["groups"] if g not in prompts]
    if unknown:
        raise RuntimeError(f"rollout worker {info.get('worker')} returned groups {unknown} it was never given")
    members = plan.members_per_group(group_size)
    b.info = info
    b.prompts = [prompts[g] for g in info["groups"] for _ in range(members)]
    b.group_ids = [g for g in info["groups"] for _ in range(members)]
    b.columns = [plan.column_label(g, m, group_size) for g in info["groups"] for m in range(members)]
    return b


def split_groups(groups: list, parts: int) -> list[list]:
    """Whole groups, contiguous, near-equal, over `parts` workers."""
    n = len(groups)
    return [groups[i * n // parts:(i + 1) * n // parts] for i in range(parts)]


class RolloutPool:
    def __init__(self, make_worker: Callable[[int], Any], workers: list, weights: WeightSync, plan: RolloutPlan,
                 group_size: int, units_per_worker: int = 1):
        self.make_worker = make_worker  # index -> a new rollout actor (orchestrator/cluster.py)
        self.workers = list(workers)
        self.weights = weights
        self.plan = plan
        self.group_size = group_size
        self.units_per_worker = units_per_worker
        self.in_flight: list[RolloutBatch] = []  # launched and not yet collected: running or queued
        self.queue: list[RolloutBatch] = []  # launched units no worker has been given yet
        self.replacements: dict = {}  # dead actor -> the actor that took its place
        self.recovered = 0
        self.restarts = [0] * len(self.workers)  # replacements per slot, for the worker table

    def __len__(self) -> int:
        return len(self.workers)

    # -- rollouts ----------------------------------------------------------------------------------
    def launch(self, groups: list[tuple[int, str]], iteration: int, preview: bool) -> list[RolloutBatch]:
        """Cut `groups` into units, give each idle worker one, queue the rest (module docstring)."""
        g = self.group_size
        members = self.plan.members_per_group(g)  # G, or G per branch (E-GRPO)
        units = [u for u in split_groups(groups, len(self.workers) * self.units_per_worker) if u]
        batches = [RolloutBatch(None, None, [p for _, p in part for _ in range(members)],
                                [gid for gid, _ in part for _ in range(members)],
                                columns=[self.plan.column_label(gid, m, g) for gid, _ in part for m in range(members)],
                                groups=part, iteration=iteration, preview=preview and i == 0, version=self.weights.version)
                   for i, part in enumerate(units)]
        self.in_flight += batches
        self.queue += batches
        self._deal()
        return batches

    def _deal(self) -> list[RolloutBatch]:
        """Queued units to the workers that have none running, in launch order; returns them."""
        busy = {id(b.worker) for b in self.in_flight if b.info_ref is not None}
        dealt = []
        for worker in self.workers:
            if not self.queue:
                break
            if id(worker) not in busy:
                b = self.queue.pop(0)
                self._submit(b, worker)
                dealt.append(b)
        return dealt

    def _submit(self, b: RolloutBatch, worker) -> ray.ObjectRef:
        b.worker = worker
        b.images, b.trajectory, b.info_ref = worker.rollout.options(num_returns=3).remote(b.groups, b.iteration, b.preview)
        return b.info_ref

    def collect(self, batches: list[RolloutBatch]) -> list[RolloutBatch]:
        """Wait for `batches`, dealing queued units as workers free up; a batch whose worker
        died is re-run (see module docstring). Each batch then describes what its worker
        reported (`apply_report`); all ran on the planned weights."""
        ids = {id(b) for b in batches}
        last = max((i for i, b in enumerate(self.in_flight) if id(b) in ids), default=-1)
        # older launches' units too (launch order): they hold the workers this wait deals to
        waiting = self.in_flight[:last + 1]
        index = {id(b): i for i, b in enumerate(waiting)}

        def done(i, info):  # unit i finished: its worker is free for the next queued unit
            apply_report(waiting[i], info, self.plan, self.group_size).info_ref = None
            return {index[id(b)]: b.info_ref for b in self._deal() if id(b) in index}

        self._deal()
        todo = {i: b.info_ref for i, b in enumerate(waiting) if b.info_ref is not None}
        gather(todo, lambda i, err: self._rerun(waiting[i]), then=done)
        queued = {id(b) for b in self.queue}
        self.in_flight = [b for b in self.in_flight if b.info_ref is not None or id(b) in queued]
        stale = [b.info["policy_version"] for b in batches if b.info["policy_version"] != b.version]
        if stale:
            raise RuntimeError(f"rollouts ran on weights {stale}, launched on v{batches[0].version}")
        return batches

    def settle(self) -> None:
        """Every launched batch finished (re-run where needed): weights may change after this."""
        self.collect(list(self.in_flight))

    # -- membership --------------------------------------------------------------------------------
    def _rerun(self, b: RolloutBatch) -> ray.ObjectRef:
        """`b`'s worker died: submit `b` again on the actor that replaced it (replacing it now if
        it is still in the pool), or on a pool worker if it had been removed by a resize."""
        worker = self.replacements.get(b.worker)
        if worker is None and b.worker in self.workers:
            worker = self._replace(self.workers.index(b.worker))
        if worker is None or worker not in self.workers:
            worker = self.workers[b.groups[0][0] % len(self.workers)]
        return self._submit(b, worker)

    def _replace(self, slot: int):
        """A new actor in `slot`, holding the current weights (checksum-verified)."""
        dead = self.workers[slot]
        self.recovered += 1
        self.restarts[slot] += 1
        new = self.make_worker(slot)
        self.weights.provide(new, survivors=[w for w in self.workers if w != dead])
        self.workers[slot] = new
        self.replacements[dead] = new
        ray.kill(dead)  # in case it is only unreachable, not gone
        return new

    def resize(self, n: int) -> None:
        """Grow or shrink to `n` workers; new ones get the current weights. Call between
        iterations; a removed worker exits after any work still queued on it."""
        if n < 1:
            raise ValueError(f"a rollout pool needs at least 1 worker, asked for {n}")
        self.settle()
        while len(self.workers) > n:
            self.workers.pop().__ray_terminate__.remote()
            self.restarts.pop()
        new = [self.make_worker(i) for i in range(len(self.workers), n)]  # start together
        for worker in new:
            self.weights.provide(worker, survivors=self.workers)
            self.workers.append(worker)
            self.restarts.append(0)

    def install(self, version: int) -> str:
        """Weights `version` into every worker, checksum-verified, once nothing is in flight; a
        worker that died meanwhile is replaced and given them. Returns the checksum."""
        self.settle()
        for _ in range(MAX_RETRIES + 1):
            checksum, dead = self.weights.install(version, self.workers)
            for slot in dead:
                self._replace(slot)
            if self.weights.version == version:
                return checksum
        raise RuntimeError(f"weight sync v{version}: rollout workers kept dying during the broadcast")

    def take_recovered(self) -> int:
        n, self.recovered = self.recovered, 0
        return n
