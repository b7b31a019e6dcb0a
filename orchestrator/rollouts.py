"""The rollout actors as one group: their work, health, scaling and weight sync.

    rollouts.start(iteration, prompts, checkpoint)   # sample: draw prompts, launch whole groups
    batches = rollouts.take(iteration)               # rollout: wait; a dead actor's unit re-runs
    checksum = rollouts.sync(version)                # settle, new weights into every actor, verified
    rollouts.probe(prompt), rollouts.checksum        # what the sync guard compares
    rollouts.rescale()                               # a `raygrpo scale` request, between iterations
    rollouts.health(), rollouts.worker_rows()        # the metrics line, the worker table

Mode (`orchestrator.mode`, RolloutSchedule):
    sync   iteration k's rollouts start and finish inside iteration k.
    async  iteration k also starts iteration k+1's rollouts, on the weights the actors hold
           now, so they run while the learner scores and updates on k. Those samples are then
           one policy version stale when the learner trains on them (`staleness` = 1), and the
           importance ratio uses the log-probs stored with them — the generating version's.
Weights change only after every launched rollout has finished (`sync` settles first), so a
batch's samples and stored log-probs always come from one version. An iteration that ends in
a checkpoint starts nothing ahead: a checkpoint never has rollouts in flight, and `--resume`
continues exactly as the uninterrupted run would have.

Work units (`rollout.units_per_worker` K): the groups are cut into K·R contiguous units for R
actors. Each idle actor gets one unit; the rest wait in a queue and are dealt, oldest launch
first, to whichever actor finishes a unit — while the driver waits in `take` — so a slow actor
runs fewer units and the fast ones take the rest (work stealing). A sample's noise derives from
(run seed, iteration, group id), never from the actor, so which actor runs a unit changes no
sample: K > 1 adds no bias. Units are dealt only while the driver waits: in async mode an
actor that finishes its unit during the update waits for the next `take` (K = 1 keeps the
previous overlap exactly).

Recovery re-runs a unit whole (same groups, same iteration, hence the same seed-derived noise)
on the replacement of its dead actor, which first receives the weights the unit started with.
A recovered iteration therefore trains on exactly the samples an undisturbed one would, each
planned group once. What the driver then counts and scores follows what each actor *reported*
it rolled out (`apply_report`), not the plan: a group lost or returned twice shows in
`groups_completed` (orchestrator/guards.py), and a copy is never trained twice.

Weight transport (object store or broadcast, checksum-verified) is orchestrator/weights.py,
used by this class alone. orchestrator/local.py offers the same interface without Ray.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import ray

from learner.config import chunk_selector
from orchestrator.actors import actor_env, actor_rows
from orchestrator.config import Config
from orchestrator.faults import MAX_RETRIES, WORKER_DIED, gather, started
from orchestrator.weights import WeightSync
from rollout.plan import RolloutPlan
from rollout.worker import RolloutWorker


@dataclass(frozen=True)
class RolloutBatch:
    """What the rollout phase hands on, per unit: refs to the outputs, and per sample what the
    actor reported it rolled out."""

    images: Any  # ObjectRef of uint8 [b, H, W, 3] (the array itself in LocalCluster)
    trajectory: Any  # ObjectRef of the Trajectory; None for evaluation samples
    prompts: tuple[str, ...]
    groups: tuple[int, ...] = ()  # prompt group of each sample
    columns: tuple[int, ...] = ()  # advantage column of each sample (E-GRPO's, else the group)
    info: dict = field(default_factory=dict)  # the actor's report: groups, policy_version, timings, preview
    iteration: int = 0


def apply_report(
    planned: list[tuple[int, str]],
    images,
    trajectory,
    info: dict,
    plan: RolloutPlan,
    group_size: int,
    iteration: int,
) -> RolloutBatch:
    """The batch as its actor reported it: info["groups"] lists the groups it rolled out, in
    the order of its images; per-sample prompts, groups and columns follow it."""
    prompts = dict(planned)
    unknown = [g for g in info["groups"] if g not in prompts]
    if unknown:
        raise RuntimeError(
            f"rollout worker {info.get('worker')} returned groups {unknown} it was never given"
        )
    members = range(plan.members_per_group(group_size))
    return RolloutBatch(
        images=images,
        trajectory=trajectory,
        info=info,
        iteration=iteration,
        prompts=tuple(prompts[g] for g in info["groups"] for _ in members),
        groups=tuple(g for g in info["groups"] for _ in members),
        columns=tuple(plan.column_label(g, m, group_size) for g in info["groups"] for m in members),
    )


def split_groups(groups: list, parts: int) -> list[list]:
    """Whole groups, contiguous, near-equal, over `parts` actors."""
    n = len(groups)
    return [groups[i * n // parts : (i + 1) * n // parts] for i in range(parts)]


class RolloutSchedule:
    """Which iterations' rollouts are in flight (module docstring, "Mode"); a subclass launches
    (`_launch`, returns at once) and waits (`_collect`)."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        o = cfg.orchestrator
        self.ahead = o.max_staleness if o.mode == "async" else 0
        self.started: dict[int, Any] = {}  # iteration -> what its launch returned

    def start(self, iteration: int, prompts, checkpoint: bool) -> None:
        """Draw prompts (from `prompts.next`) and launch the rollouts of `iteration`, and in async
        mode of the next `max_staleness` iterations too, unless `iteration` ends in a checkpoint."""
        o = self.cfg.orchestrator
        ahead = 0 if checkpoint else self.ahead
        for k in range(iteration, min(iteration + ahead, o.iterations - 1) + 1):
            if k not in self.started:
                groups = list(enumerate(prompts.next(o.prompts_per_iter)))
                self.started[k] = self._launch(groups, k, preview=k % o.sample_every == 0)

    def take(self, iteration: int) -> list[RolloutBatch]:
        """The finished rollouts of `iteration` (a dead actor's units re-run)."""
        return self._collect(self.started.pop(iteration))

    def rollout(
        self, groups: list[tuple[int, str]], iteration: int, preview: bool = False
    ) -> list[RolloutBatch]:
        """Roll out `groups` now, outside the schedule (benches, tests)."""
        return self._collect(self._launch(groups, iteration, preview))

    def _launch(self, groups: list[tuple[int, str]], iteration: int, preview: bool):
        raise NotImplementedError

    def _collect(self, launched) -> list[RolloutBatch]:
        raise NotImplementedError


@dataclass
class _Unit:
    """A launched unit of work, Rollouts' own bookkeeping: the plan and, while it runs, where."""

    groups: list[tuple[int, str]]  # (group id, prompt): what a re-run needs
    iteration: int
    preview: bool
    version: int  # weights version it was launched with
    actor: Any = None
    refs: tuple | None = None  # (images, trajectory, info) while running
    result: RolloutBatch | None = None


class Rollouts(RolloutSchedule):
    """The rollout actors (one GPU each on clusters), started here and waited for; `learners`
    publish the weights, `control` is the job's ScaleControl actor (None: no live scaling)."""

    def __init__(self, cfg: Config, plan: RolloutPlan, learners: list, control=None, actor_cls=RolloutWorker):
        super().__init__(cfg)
        self.plan, self.actor_cls, self.control = plan, actor_cls, control
        self.group_size, self.units_per_actor = cfg.rollout.group_size, cfg.rollout.units_per_worker
        self.actors = [self._new_actor(i) for i in range(cfg.rollout.num_workers)]
        self.restarts = [0] * len(self.actors)  # replacements per slot, for the worker table
        self._in_flight: list[_Unit] = []  # launched and not yet finished: running or queued
        self._queue: list[_Unit] = []  # launched units no actor has been given yet
        self._replacements: dict = {}  # dead actor -> the actor that took its place
        self._recovered = 0  # actors replaced since the last `health()`
        try:  # a failed start leaves no actor behind
            started(
                {
                    f"rollout worker {i}": (a, f"model.path {cfg.model.path!r}")
                    for i, a in enumerate(self.actors)
                }
            )
            self.weights = WeightSync(
                cfg, learners, initial_checksum=ray.get(self.actors[0].checksum.remote())
            )
        except BaseException:
            self.shutdown()
            raise

    def _new_actor(self, index: int):
        r = self.cfg.rollout
        remote = ray.remote(self.actor_cls).options(
            num_cpus=r.num_cpus,
            num_gpus=r.num_gpus,
            runtime_env=actor_env(self.cfg.orchestrator.worker_niceness),
        )
        return remote.remote(
            self.cfg.model, r, self.plan, self.cfg.orchestrator.seed, index, chunk_selector(self.cfg.learner)
        )

    def __len__(self) -> int:
        return len(self.actors)

    # -- rollouts ----------------------------------------------------------------------------------
    def _launch(self, groups: list[tuple[int, str]], iteration: int, preview: bool) -> list[_Unit]:
        """Cut `groups` into units, give each idle actor one, queue the rest (module docstring)."""
        parts = [p for p in split_groups(groups, len(self.actors) * self.units_per_actor) if p]
        units = [
            _Unit(part, iteration, preview and i == 0, self.weights.version) for i, part in enumerate(parts)
        ]
        self._in_flight += units
        self._queue += units
        self._deal()
        return units

    def _deal(self) -> list[_Unit]:
        """Queued units to the actors that have none running, in launch order; returns them."""
        busy = {id(u.actor) for u in self._in_flight if u.refs is not None}
        dealt = []
        for actor in self.actors:
            if not self._queue:
                break
            if id(actor) not in busy:
                unit = self._queue.pop(0)
                self._submit(unit, actor)
                dealt.append(unit)
        return dealt

    def _submit(self, unit: _Unit, actor) -> ray.ObjectRef:
        unit.actor = actor
        unit.refs = tuple(
            actor.rollout.options(num_returns=3).remote(unit.groups, unit.iteration, unit.preview)
        )
        return unit.refs[2]

    def _collect(self, units: list[_Unit]) -> list[RolloutBatch]:
        """Wait for `units`, dealing queued units as actors free up; a unit whose actor died is
        re-run (module docstring). Each batch describes what its actor reported; all ran on the
        weights they were launched with."""
        ids = {id(u) for u in units}
        last = max((i for i, u in enumerate(self._in_flight) if id(u) in ids), default=-1)
        # older launches' units too (launch order): they hold the actors this wait deals to
        waiting = self._in_flight[: last + 1]
        index = {id(u): i for i, u in enumerate(waiting)}

        def done(i, info):  # unit i finished: its actor is free for the next queued unit
            unit = waiting[i]
            images, trajectory, _ = unit.refs
            unit.result = apply_report(
                unit.groups, images, trajectory, info, self.plan, self.group_size, unit.iteration
            )
            unit.refs = None
            return {index[id(u)]: u.refs[2] for u in self._deal() if id(u) in index}

        self._deal()
        todo = {i: u.refs[2] for i, u in enumerate(waiting) if u.refs is not None}
        gather(todo, lambda i, err: self._rerun(waiting[i]), then=done)
        queued = {id(u) for u in self._queue}
        self._in_flight = [u for u in self._in_flight if u.refs is not None or id(u) in queued]
        stale = [
            u.result.info["policy_version"] for u in units if u.result.info["policy_version"] != u.version
        ]
        if stale:
            raise RuntimeError(f"rollouts ran on weights {stale}, launched on v{units[0].version}")
        return [u.result for u in units]

    def _settle(self) -> None:
        """Every launched unit finished (re-run where needed): weights may change after this."""
        self._collect(list(self._in_flight))

    def sample_ode(
        self, prompts: list[str], seeds: list[int], preview_cols: int
    ) -> tuple[list[RolloutBatch], bytes]:
        """Deterministic ODE samples for evaluation, the prompts split over the actors: (a batch
        per actor to score, the preview PNG of actor 0's first rows)."""
        n, batches, infos = len(self.actors), [], []
        for i, actor in enumerate(self.actors):
            lo, hi = i * len(prompts) // n, (i + 1) * len(prompts) // n
            if lo == hi:
                continue
            images, info = actor.sample_ode.options(num_returns=2).remote(
                prompts[lo:hi], seeds[lo:hi], preview_cols if i == 0 else 0
            )
            batches.append(RolloutBatch(images=images, trajectory=None, prompts=tuple(prompts[lo:hi])))
            infos.append(info)
        return batches, ray.get(infos[0]).get("preview_png", b"")

    # -- membership --------------------------------------------------------------------------------
    def _rerun(self, unit: _Unit) -> ray.ObjectRef:
        """`unit`'s actor died: submit it again on the actor that replaced it (replacing it now
        if it is still a member), or on a member if it had been removed by a resize."""
        actor = self._replacements.get(unit.actor)
        if actor is None and unit.actor in self.actors:
            actor = self._replace(self.actors.index(unit.actor))
        if actor is None or actor not in self.actors:
            actor = self.actors[unit.groups[0][0] % len(self.actors)]
        return self._submit(unit, actor)

    def _replace(self, slot: int):
        """A new actor in `slot`, holding the current weights (checksum-verified)."""
        dead = self.actors[slot]
        self._recovered += 1
        self.restarts[slot] += 1
        new = self._new_actor(slot)
        self.weights.provide(new, survivors=[a for a in self.actors if a != dead])
        self.actors[slot] = new
        self._replacements[dead] = new
        ray.kill(dead)  # in case it is only unreachable, not gone
        return new

    def resize(self, n: int) -> None:
        """Grow or shrink to `n` actors; new ones get the current weights. Call between
        iterations; a removed actor exits after any work still queued on it."""
        if n < 1:
            raise ValueError(f"a run needs at least 1 rollout worker, asked for {n}")
        self._settle()
        while len(self.actors) > n:
            self.actors.pop().__ray_terminate__.remote()
            self.restarts.pop()
        new = [self._new_actor(i) for i in range(len(self.actors), n)]  # start together
        for actor in new:
            self.weights.provide(actor, survivors=self.actors)
            self.actors.append(actor)
            self.restarts.append(0)

    def rescale(self) -> None:
        """Apply a `raygrpo scale` request, if one came (call between iterations)."""
        if self.control is None:
            return
        request = ray.get(self.control.pop_request.remote())
        if request is not None:
            self.resize(request["rollout_workers"])
            self.control.applied.remote(len(self.actors), request["id"])

    # -- weights -----------------------------------------------------------------------------------
    def sync(self, version: int) -> str:
        """Once every launched unit has finished, the learner's weights as `version` into every
        actor, checksum-verified; an actor that died meanwhile is replaced and given them.
        Returns the checksum."""
        self._settle()
        for _ in range(MAX_RETRIES + 1):
            checksum, dead = self.weights.install(version, self.actors)
            for slot in dead:
                self._replace(slot)
            if self.weights.version == version:
                return checksum
        raise RuntimeError(f"weight sync v{version}: rollout workers kept dying during the broadcast")

    @property
    def checksum(self) -> str:
        """Checksum of the weights the actors hold now (the last sync's, or the base's)."""
        return self.weights.checksum

    def probe(self, prompt: str) -> dict:
        """{actor: digest of its velocity on a fixed input} (orchestrator/guards.py); an actor
        that died meanwhile is left out (the sync replaces it)."""
        out = {}
        for actor, ref in [(a, a.probe.remote(prompt)) for a in self.actors]:
            try:
                out[actor._actor_id.hex()] = ray.get(ref)
            except WORKER_DIED:
                pass
        return out

    # -- reporting ---------------------------------------------------------------------------------
    def health(self) -> dict:
        """For the metrics line: how many actors, and how many were replaced since the last call."""
        recovered, self._recovered = self._recovered, 0
        return {"rollout_workers": len(self.actors), "recovered_failures": recovered}

    def worker_rows(self) -> list[dict]:
        """The rollout rows of the worker table (pid, node, version, counters, throughput, restarts)."""
        return actor_rows("rollout", self.actors, self.restarts)

    def shutdown(self) -> None:
        for actor in self.actors:
            ray.kill(actor)
