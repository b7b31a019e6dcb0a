"""Which run dir a run may write, and what `--resume` may change. Checked before Ray starts.
`resolve_checkpoint`: the checkpoint a `raygrpo eval --checkpoint` argument names.

    fresh run    the dir must hold no run yet (no metrics line, no checkpoint): histories of two
                 runs never mix in one metrics.jsonl. Without --run-dir each run gets its own
                 runs/<algorithm>-<time>[-N].
    --resume     continues from the newest checkpoint that verifies (orchestrator/checkpoint.py:
                 a broken newest one falls back to the one before it, with a warning). The config
                 is compared with that checkpoint's: operational fields (OPERATIONAL: how many
                 iterations, workers, threads, where the dashboard listens) may change; anything
                 else changes the run's math, so the differences are listed and refused unless
                 the user passes --allow-config-changes.
"""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from orchestrator import checkpoint, metrics as M
from orchestrator.config import config_from_dict, dump_config
from orchestrator.errors import ConfigError, UserError

# Fields a resume may change freely: they say how the run is executed and for how long, not what
# it computes (orchestrator.iterations extends a finished run).
OPERATIONAL = (
    "orchestrator.iterations",
    "orchestrator.checkpoint_every",
    "orchestrator.sample_every",
    "orchestrator.eval_before_after",
    "orchestrator.dashboard",
    "orchestrator.dashboard_host",
    "orchestrator.dashboard_port",
    "orchestrator.worker_niceness",
    "rollout.num_workers",
    "rollout.num_cpus",
    "rollout.torch_threads",
    "rollout.sync_timeout_s",
    "learner.num_cpus",
    "learner.torch_threads",
)


def default_run_dir(algorithm: str) -> Path:
    """runs/<algorithm>-<time>, with -2, -3 … if a run started in the same second."""
    base = Path(f"runs/{algorithm}-{time.strftime('%Y%m%d-%H%M%S')}")
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def holds_run(run_dir: Path) -> str | None:
    """What shows `run_dir` already holds a run ('3 metrics lines, checkpoints up to iter_000004'),
    or None."""
    lines = len(M.read_metrics(run_dir)) if (run_dir / "metrics.jsonl").is_file() else 0
    ckpts = checkpoint.complete(run_dir)
    found = ([f"{lines} metrics lines"] if lines else []) + (
        [f"checkpoints up to {ckpts[0].name}"] if ckpts else []
    )
    return ", ".join(found) or None


def flatten(tree, prefix: str = "") -> dict:
    """{'learner.lr': 1e-4, ...} of a nested config dict (lists are leaves)."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out = {}
    for k, v in tree.items():
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def config_changes(old_yaml: str, cfg) -> list[tuple[str, object, object]]:
    """(field, value in the checkpoint, value now) for every field that differs. The checkpoint's
    config is read as this version reads it, so a field added since (a scorer's `replicas`)
    compares as its default, not as a change; one this version refuses compares as written."""
    old = yaml.safe_load(old_yaml) or {}
    try:
        old = yaml.safe_load(dump_config(config_from_dict(old)))
    except ConfigError:
        pass
    old, new = flatten(old), flatten(yaml.safe_load(dump_config(cfg)))
    missing = object()
    return [
        (k, old.get(k, missing), new.get(k, missing))
        for k in sorted(set(old) | set(new))
        if old.get(k, missing) != new.get(k, missing)
    ]


def prepare(cfg, run_dir: Path, resume: bool, allow_config_changes: bool = False) -> Path | None:
    """Check `run_dir` for this run (module docstring). Returns the checkpoint to resume from
    (None for a fresh run); raises UserError naming the problem and the fix. Broken checkpoints
    skipped and fields changed on resume are warned about (once per process)."""
    run_dir = Path(run_dir)
    if not resume:
        used = holds_run(run_dir)
        if used:
            raise UserError(
                f"--run-dir {run_dir} already holds a run ({used}); continue it with --resume, or "
                "give a new --run-dir (without --run-dir each run gets its own under runs/)"
            )
        return None
    ckpt = checkpoint.latest(run_dir, warn=True)
    if ckpt is None:
        broken = checkpoint.complete(run_dir)
        why = f" ({len(broken)} there, none verifies)" if broken else ""
        raise UserError(
            f"--resume: no complete checkpoint in {checkpoint.checkpoints_dir(run_dir)}{why}; "
            "start the run without --resume in a new --run-dir"
        )
    changes = (
        config_changes((ckpt / "config.yaml").read_text(), cfg) if (ckpt / "config.yaml").is_file() else []
    )
    refused = [c for c in changes if c[0] not in OPERATIONAL]
    if refused and not allow_config_changes:
        listing = "\n".join(f"  {k}: {_show(a)} (checkpoint) -> {_show(b)} (now)" for k, a, b in refused)
        raise UserError(
            f"--resume: the config differs from {ckpt.name}'s in fields that change the run:\n{listing}\n"
            f"resume with the checkpoint's config (--config {ckpt / 'config.yaml'}), or pass "
            "--allow-config-changes to continue with the new values"
        )
    for k, a, b in changes:
        checkpoint.warn_once(f"--resume changes {k}: {_show(a)} -> {_show(b)}")
    return ckpt


def _show(value) -> str:
    return "(unset)" if value is not None and type(value) is object else repr(value)


def resolve_checkpoint(arg: str) -> Path:
    """A checkpoint dir from what a user may name: a checkpoints/iter_NNNNNN dir (verified), or
    the run dir, its checkpoints dir or checkpoints/latest (each: the newest checkpoint that
    verifies, so a broken newest one falls back with a warning)."""
    p = Path(arg).expanduser()
    run_dir = {"checkpoints": p.parent, "latest": p.parent.parent}.get(p.name, p)
    if (run_dir / "checkpoints").is_dir() and p in (
        run_dir,
        run_dir / "checkpoints",
        run_dir / "checkpoints" / "latest",
    ):
        newest = checkpoint.latest(run_dir, warn=True)
        if newest is None:
            raise UserError(
                f"--checkpoint {arg}: no checkpoint of {run_dir} verifies; give a checkpoints/iter_* dir"
            )
        return newest
    if not (p / "orchestrator.json").exists() and not (p / "policy.safetensors").exists():
        raise UserError(
            f"--checkpoint {arg}: not a checkpoint; give a run dir, its checkpoints/latest or a "
            "checkpoints/iter_* dir, or 'base'"
        )
    problems = checkpoint.verify(p)
    if problems:
        raise UserError(
            f"--checkpoint {arg} is broken: {'; '.join(problems)}; give an earlier checkpoints/iter_* "
            "dir, or the run dir to take the newest one that verifies"
        )
    return p
