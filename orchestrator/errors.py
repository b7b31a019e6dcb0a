"""The errors raygrpo words for the user, and how the CLI shows them.

    UserError     something the user gave or asked for is wrong (a config field, a prompt file,
                  a run dir, a checkpoint): the message names it and the fix. Raised before any
                  actor starts wherever it can be known there. CLI: the message, exit 2.
    ConfigError   a UserError about the config (field path + fix).
    RunStopped    a run stopped on purpose: an actor failed on an input only it could see, a
                  reward or the update went non-finite, a sync did not reach the model, a
                  learner rank died. The message names the actor, the input and the fix, and
                  the last good checkpoint; the cause's traceback goes to RUN_DIR/error.log.
                  CLI: the message, exit 1.

Anything else is a bug of ours: the CLI lets it raise, traceback and all.
"""

from __future__ import annotations

import re
from pathlib import Path


class UserError(Exception):
    """A problem with what the user gave or asked for, worded with the fix."""


class ConfigError(UserError, ValueError):
    """A config problem, worded for the user (field path + fix)."""


class RunStopped(RuntimeError):
    """The run stopped with a message for the user (see the module docstring)."""

    def with_resume_hint(self, run_dir: Path) -> "RunStopped":
        from orchestrator.checkpoint import resume_hint

        return type(self)(f"{self}\n{resume_hint(run_dir)}")


class ActorFailed(RunStopped):
    """An actor raised on an input only it could see (a model file, an image batch)."""


_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt)\b.*$")


def remote_message(err: BaseException) -> str:
    """'ExcType: message' of the exception an actor raised, from Ray's wrapped error (whose
    text is the remote traceback); the plain str for anything else."""
    cause = getattr(err, "cause", None)  # RayTaskError keeps the actor's exception
    if isinstance(cause, BaseException) and not isinstance(cause, type(err)):
        return f"{type(cause).__name__}: {cause}"
    lines = str(err).rstrip().splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if _EXCEPTION_LINE.match(lines[i]) and not lines[i].startswith(("ray.exceptions.", "The actor died")):
            return "\n".join(lines[i:]).strip()
    return lines[-1].strip() if lines else type(err).__name__
