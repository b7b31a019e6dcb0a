"""Atomic checkpoints: written into a temp dir, renamed into place, then `latest` updated.

    run_dir/checkpoints/iter_000004/
        deepspeed/          DeepSpeed engine state of every learner rank (model + optimizer)
        policy.safetensors  trainable weights (what `raygrpo eval --checkpoint` loads)
        orchestrator.json   next iteration, prompt-sampler state, policy version, checksum
        config.yaml         the effective config
        manifest.json       every other file's size and crc32, written last
    run_dir/checkpoints/latest   name of the newest complete checkpoint

A crash mid-write leaves only a `.tmp-*` dir, which is ignored and cleaned up: the last
complete checkpoint stays valid. Loading verifies a checkpoint first (`verify`: the manifest's
sizes and checksums, orchestrator.json parses, policy.safetensors opens, the DeepSpeed state is
there); `latest` is the newest one that passes, so a checkpoint broken after it was written
(a full disk, a half-copied run dir) falls back to the one before it, with a warning. The run
dir must be on storage every learner node sees.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import zlib
from pathlib import Path

from orchestrator.metrics import write_json_atomic

log = logging.getLogger("raygrpo")
MANIFEST = "manifest.json"
STATE_KEYS = ("next_iteration", "policy_version", "prompt_sampler")
WHOLE_FILE_CRC = 1 << 30  # bytes; larger files get the crc32 of their first and last EDGE bytes
EDGE = 64 << 20
_ITER = re.compile(r"^iter_(\d+)$")
_warned: set[str] = set()


def warn_once(message: str) -> None:
    """A warning on stderr, once per process (the CLI and `train()` check the same run dir)."""
    if message not in _warned:
        _warned.add(message)
        log.warning("warning: %s", message)


def checkpoints_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def begin(run_dir: Path, iteration: int) -> Path:
    tmp = checkpoints_dir(run_dir) / f".tmp-iter_{iteration:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def commit(tmp: Path, state: dict, config_yaml: str) -> Path:
    write_json_atomic(tmp / "orchestrator.json", state)
    (tmp / "config.yaml").write_text(config_yaml)
    write_json_atomic(
        tmp / MANIFEST, {"files": {str(f.relative_to(tmp)): file_digest(f) for f in _files(tmp)}}
    )
    final = tmp.with_name(tmp.name.removeprefix(".tmp-"))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    latest = final.parent / "latest"
    tmp_latest = final.parent / ".latest.tmp"
    tmp_latest.write_text(final.name + "\n")
    os.replace(tmp_latest, latest)
    return final


def _files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.rglob("*") if f.is_file() and f.name != MANIFEST)


def file_digest(path: Path) -> dict:
    """{"bytes", "crc32"}: the crc32 of the whole file, or of its two ends above WHOLE_FILE_CRC."""
    size = path.stat().st_size
    crc = 0
    with open(path, "rb") as f:
        spans = [(0, size)] if size <= WHOLE_FILE_CRC else [(0, EDGE), (size - EDGE, EDGE)]
        for start, length in spans:
            f.seek(start)
            while length > 0:
                block = f.read(min(length, 8 << 20))
                if not block:
                    break
                crc, length = zlib.crc32(block, crc), length - len(block)
    return {"bytes": size, "crc32": crc}


def verify(path: Path) -> list[str]:
    """What is wrong with checkpoint `path` (an empty list: it can be loaded)."""
    path = Path(path)
    problems = []
    manifest = path / MANIFEST
    if manifest.is_file():
        try:
            files = json.loads(manifest.read_text())["files"]
        except (ValueError, KeyError, TypeError) as err:
            return [f"{MANIFEST} is unreadable ({err})"]
        for name, want in files.items():
            f = path / name
            if not f.is_file():
                problems.append(f"{name} is missing")
            elif f.stat().st_size != want["bytes"]:
                problems.append(f"{name} has {f.stat().st_size} bytes, {want['bytes']} were written")
            elif file_digest(f)["crc32"] != want["crc32"]:
                problems.append(f"{name} differs from what was written (crc32)")
    problems += _state_problems(path) + _policy_problems(path)
    ds = path / "deepspeed"
    if not list(ds.glob("*/*model_states.pt")) or not list(ds.glob("*/*optim_states.pt")):
        problems.append("deepspeed/ lacks the model or optimizer state files")
    return list(dict.fromkeys(problems))


def _state_problems(path: Path) -> list[str]:
    try:
        state = json.loads((path / "orchestrator.json").read_text())
    except FileNotFoundError:
        return ["orchestrator.json is missing"]
    except (OSError, ValueError) as err:
        return [f"orchestrator.json does not parse ({err})"]
    lacking = [k for k in STATE_KEYS if not isinstance(state, dict) or k not in state]
    return [f"orchestrator.json lacks {lacking}"] if lacking else []


def _policy_problems(path: Path) -> list[str]:
    from safetensors import safe_open

    f = path / "policy.safetensors"
    if not f.is_file():
        return ["policy.safetensors is missing"]
    try:
        with safe_open(str(f), framework="pt") as st:
            if not list(st.keys()):
                return ["policy.safetensors holds no tensors"]
    except Exception as err:  # safetensors raises its own SafetensorError (not an OSError) on a bad header
        return [f"policy.safetensors does not open ({type(err).__name__}: {err})"]
    return []


def complete(run_dir: Path) -> list[Path]:
    """The run's checkpoint dirs (not temp dirs), newest first."""
    folder = checkpoints_dir(run_dir)
    found = (
        [(int(m[1]), p) for p in folder.iterdir() if p.is_dir() and (m := _ITER.match(p.name))]
        if folder.is_dir()
        else []
    )
    return [p for _, p in sorted(found, reverse=True)]


def find_resumable(run_dir: Path) -> tuple[Path | None, list[tuple[Path, list[str]]]]:
    """(the newest checkpoint that verifies, [(newer broken checkpoint, its problems)])."""
    broken = []
    for path in complete(run_dir):
        problems = verify(path)
        if not problems:
            return path, broken
        broken.append((path, problems))
    return None, broken


def latest(run_dir: Path, warn: bool = False) -> Path | None:
    """The newest checkpoint that verifies (see module docstring); `warn` logs the broken ones skipped."""
    path, broken = find_resumable(run_dir)
    if warn:
        for bad, problems in broken:
            warn_once(
                f"checkpoint {bad} is broken ({'; '.join(problems)}); "
                + (f"falling back to {path.name}" if path else "no earlier checkpoint verifies")
            )
    return path


def resume_hint(run_dir: Path) -> str:
    """The end of a stopped run's message: the newest checkpoint that verifies and the --resume
    command that continues from it, or that none was written yet."""
    last = latest(run_dir)
    if last is None:
        return (
            f"No checkpoint was written yet in {run_dir}/checkpoints: start the run again, in a new "
            "--run-dir if this one has metrics lines (set orchestrator.checkpoint_every lower to lose "
            "less next time)."
        )
    return (
        f"The last checkpoint is {last}. Resume from it with:\n"
        f"    raygrpo train --config {Path(run_dir) / 'config.yaml'} --run-dir {run_dir} --resume"
    )


def read_state(path: Path) -> dict:
    return json.loads((Path(path) / "orchestrator.json").read_text())


def load_policy_weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(path) / "policy.safetensors"))
