"""Helpers shared by the benchmark scripts: run the CLI as a user would, evaluate checkpoints."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CONFIG = "deploy/configs/tiny.yaml"
# The system benchmarks' workload (overhead, async, scaling, soak, sim_scale, chunking): the tiny
# model as tiny.yaml trained it before the LoRA MixGRPO recipe became the default (issue 14) —
# chunk_grpo with full fine-tuning, so every weight is sharded, synced and checkpointed — and no
# reward-hacking monitor; their results in bench/results were measured on it.
WORKLOAD = ["algorithm=chunk_grpo", "model.finetune=full", "orchestrator.heldout_every=0"]


def run(cmd: list[str]) -> str:
    """Run a command from the repo root; raise with its output tail when it fails."""
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    return out.stdout


def evaluate(checkpoint: str, out: Path, config: str = CONFIG, prompts: str = "tiny:heldout") -> dict:
    """`raygrpo eval` on the held-out prompts: {reward name: mean}."""
    run(
        [
            "raygrpo",
            "eval",
            "--checkpoint",
            checkpoint,
            "--prompts",
            prompts,
            "--config",
            config,
            "--json",
            str(out),
        ]
    )
    return json.loads(out.read_text())


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}"
