"""Atomic checkpoints: written into a temp dir, renamed into place, then `latest` updated.

    run_dir/checkpoints/iter_000004/
        deepspeed/          DeepSpeed engine state of every learner rank (model + optimizer)
        policy.safetensors  trainable weights (what `raygrpo eval --checkpoint` loads)
        orchestrator.json   next iteration, prompt-sampler state, policy version, checksum
        config.yaml         the effective config
    run_dir/checkpoints/latest   name of the newest complete checkpoint

A crash mid-write leaves only a `.tmp-*` dir, which is ignored and cleaned up: the last
complete checkpoint stays valid. The run dir must be on storage every learner node sees.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from orchestrator.metrics import write_json_atomic


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
    final = tmp.with_name(tmp.name.removeprefix(".tmp-"))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    latest = final.parent / "latest"
    tmp_latest = final.parent / ".latest.tmp"
    tmp_latest.write_text(final.name + "\n")
    os.replace(tmp_latest, latest)
    return final


def latest(run_dir: Path) -> Path | None:
    pointer = checkpoints_dir(run_dir) / "latest"
    if not pointer.exists():
        return None
    path = pointer.parent / pointer.read_text().strip()
    return path if (path / "orchestrator.json").exists() else None


def read_state(path: Path) -> dict:
    return json.loads((Path(path) / "orchestrator.json").read_text())


def load_policy_weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(path) / "policy.safetensors"))
