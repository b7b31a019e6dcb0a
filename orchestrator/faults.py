"""Worker deaths: which errors mean "the actor died", waiting on tasks that may be re-run, and
the learner failure that stops a job.

Rollout and reward workers are replaceable: their state is the policy weights (re-sent) or a
frozen scorer, and their work is a pure function of (groups, iteration, seed) — so a task
whose actor died is simply submitted again, on a replacement. The learner is not: its
optimizer state lives only in its ranks, so a dead learner stops the job, and the message
says which checkpoint `--resume` continues from.
"""

from __future__ import annotations

from typing import Callable, Hashable

import ray
from ray.exceptions import RayActorError, RayTaskError

from orchestrator.errors import ActorFailed, RunStopped, remote_message

WORKER_DIED = (RayActorError,)  # the actor's process is gone (killed, OOM, node lost, ray.kill)
MAX_RETRIES = 3  # re-runs of one task before the run gives up: a worker that dies every time is a bug


def gather(
    tasks: dict[Hashable, ray.ObjectRef],
    retry: Callable[[Hashable, Exception], ray.ObjectRef],
    failed: Callable[[Hashable, Exception], Exception] | None = None,
    then: Callable[[Hashable, object], dict[Hashable, ray.ObjectRef]] | None = None,
) -> dict:
    """Results of `tasks` by key. A task whose actor died is submitted again by `retry(key,
    error)` (which replaces the actor) as soon as the death is seen, and awaited in turn. A task
    that raised re-raises, as `failed(key, error)` when given (an error worded for the user).
    `then(key, result)`, called as each task finishes, may return new tasks to await too."""
    pending = {ref: key for key, ref in tasks.items()}
    tries = {key: 0 for key in tasks}
    out = {}
    while pending:
        [ref], _ = ray.wait(list(pending), num_returns=1)
        key = pending.pop(ref)
        try:
            out[key] = ray.get(ref)
        except RayTaskError as err:
            if failed is None:
                raise
            raise failed(key, err) from err
        except WORKER_DIED as err:
            tries[key] += 1
            if tries[key] > MAX_RETRIES:
                raise RuntimeError(
                    f"task {key!r} lost its worker {tries[key]} times; last error: {err}"
                ) from err
            pending[retry(key, err)] = key
            continue
        for new_key, new_ref in (then(key, out[key]) if then else {}).items():
            pending[new_ref], tries[new_key] = new_key, 0
    return out


class LearnerFailure(RunStopped):
    """A learner rank died: the job stops (its optimizer state is gone) and resumes from a checkpoint."""


def started(actors: dict[str, tuple[ray.actor.ActorHandle, str]]) -> None:
    """Wait until every actor ({label: (actor, the config field it loads)}) has run its __init__;
    one that raised there (a model file it cannot load, say) stops the run with one message
    naming it, the error, the field and the fix."""
    refs = {
        label: actor.info.remote() for label, (actor, _) in actors.items()
    }  # every worker class has info()
    for label, ref in refs.items():
        try:
            ray.get(ref)
        except RayActorError as err:
            if not err.actor_init_failed:
                raise
            raise ActorFailed(
                f"{label} could not start: {remote_message(err)}\nIt loads {actors[label][1]}: make sure "
                "those files are complete and readable where the actor runs (download or save them "
                "again), then start the run again"
            ) from err


def gather_learners(refs: list[ray.ObjectRef], phase: str) -> list:
    """Results of one call on every learner rank. A dead rank raises LearnerFailure at once (the
    other ranks may be blocked in a collective with it, so waiting for them would hang)."""
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        try:
            ray.get(ready[0])
        except WORKER_DIED as err:
            rank = refs.index(ready[0])
            raise LearnerFailure(
                f"learner rank {rank} died during {phase}: {type(err).__name__}; "
                "the job stops (the optimizer state lived in the learner ranks)."
            ) from err
    return ray.get(refs)
