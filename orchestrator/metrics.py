"""Metric names (constants, documented once: README's table is checked against METRICS),
and the run-dir writers: metrics.jsonl, TensorBoard events, status.json."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

ITERATION = "iteration"
POLICY_VERSION = "policy_version"
WEIGHTS_CHECKSUM = "weights_checksum"
ELAPSED = "elapsed_s"
IMAGES_PER_S = "throughput/images_per_s"
GROUPS_PLANNED = "groups_planned"
GROUPS_COMPLETED = "groups_completed"
RECOVERED_FAILURES = "recovered_failures"
ROLLOUT_WORKERS = "rollout_workers"
STALENESS = "staleness"
ZERO_STD_RATIO = "zero_std_ratio"
TRAINED_SAMPLES = "samples/trained"
ADVANTAGE_ABS = "advantage/abs_mean"
LOSS = "learner/loss"
CLIP_FRACTION = "learner/clip_fraction"
APPROX_KL = "learner/approx_kl"
RATIO_MEAN = "learner/ratio_mean"
RATIO_MIN = "learner/ratio_min"
RATIO_MAX = "learner/ratio_max"
RATIO_MEAN_FIRST = "learner/ratio_mean_first"
RATIO_DEV_LATER = "learner/ratio_dev_later"
GRAD_NORM = "learner/grad_norm"
KL = "learner/kl"
OPTIMIZER_STEPS = "learner/optimizer_steps"
NONFINITE = "learner/nonfinite"
PHASES = ("sample", "rollout", "score", "advantages", "update", "sync", "log")


def reward_mean(name: str) -> str:
    return f"reward/{name}/mean"


def reward_std(name: str) -> str:
    return f"reward/{name}/std"


def phase_time(phase: str) -> str:
    return f"time/{phase}"


METRICS: dict[str, str] = {
    ITERATION: "iteration index (0-based) the line describes",
    POLICY_VERSION: "weights version after this iteration's sync (rollouts of iteration k use version "
    "k − staleness)",
    WEIGHTS_CHECKSUM: "checksum of the published weights (exact integer sums per tensor on its device, "
    "rollout/weight_sync.py); every rollout worker verified to hold the same",
    ELAPSED: "seconds since the run (or resume) started",
    IMAGES_PER_S: "images generated per second of iteration wall time",
    GROUPS_PLANNED: "prompt groups planned this iteration",
    GROUPS_COMPLETED: "prompt groups received: reported by the rollout workers and scored (a re-run of "
    "a dead worker's batch counts once; a lost group lowers it below groups_planned, a doubled one raises "
    "it, and either is a warning in status.json)",
    RECOVERED_FAILURES: "rollout / reward workers that died and were replaced since the previous line "
    "(their unfinished work re-run)",
    ROLLOUT_WORKERS: "rollout workers in the pool when the line was written (`raygrpo scale` changes it)",
    STALENESS: "policy versions between the weights that generated the samples and the weights the "
    "learner updated (0 sync, ≤ max_staleness async)",
    ZERO_STD_RATIO: "share of advantage groups (prompt groups; E-GRPO: branch columns) whose rewards "
    "have zero spread (dropped: no signal)",
    ADVANTAGE_ABS: "mean absolute advantage over trained samples",
    TRAINED_SAMPLES: "samples the learner trained on (after dropping zero-spread groups and best-of-N)",
    reward_mean("<name>"): "mean reward of scorer <name> over the iteration's samples",
    reward_std("<name>"): "std of scorer <name>'s rewards over the iteration's samples",
    LOSS: "clipped surrogate loss: per minibatch the mean over samples of each sample's mean chunk loss, "
    "averaged over the iteration's minibatches (optimizer steps)",
    CLIP_FRACTION: "share of (sample, chunk) ratios outside [1 − clip_range, 1 + clip_range_high], "
    "all minibatches",
    APPROX_KL: "½·mean(Δlogp²) over trained transitions, all minibatches",
    RATIO_MEAN: "mean (sample, chunk) ratio over all minibatches",
    RATIO_MIN: "smallest (sample, chunk) ratio",
    RATIO_MAX: "largest (sample, chunk) ratio",
    RATIO_MEAN_FIRST: "mean ratio at the first minibatch: must be 1 (rollout and learner agree)",
    RATIO_DEV_LATER: "mean |ratio − 1| over the minibatches after the first: > 0 once an optimizer "
    "step has moved the policy (0 with one minibatch)",
    GRAD_NORM: "global gradient norm before clipping, the largest over the iteration's optimizer steps "
    "(a non-finite one wins)",
    KL: "KL to the frozen base policy (per-sample mean over its trained transitions, mean over samples), "
    "averaged over the iteration's minibatches (0 unless learner.kl_coef > 0)",
    OPTIMIZER_STEPS: "optimizer steps this iteration (non-empty minibatches of learner/schedule.py)",
    NONFINITE: "non-finite losses (backward passes, summed over ranks) plus optimizer steps with a "
    "non-finite gradient norm, this iteration",
    phase_time("<phase>"): f"seconds spent in phase <phase>, one of {', '.join(PHASES)}",
}


# -- held-out evaluation and the reward-hacking monitor (orchestrator/monitor.py) ---------------
# Written only on the lines of iterations that ran a held-out evaluation (orchestrator.heldout_every).
HELDOUT_TRAIN_REWARD = "heldout/train_reward"
HACKING = "heldout/hacking"
HELDOUT_PHASE = "heldout"  # its time is time/heldout, on the same lines


def heldout_mean(name: str) -> str:
    return f"heldout/{name}/mean"


METRICS.update(
    {
        heldout_mean(
            "<name>"
        ): "held-out evaluation (ODE samples of orchestrator.eval_prompts after this iteration's "
        "update): mean of trained scorer or held-out judge <name>",
        HELDOUT_TRAIN_REWARD: "held-out evaluation: the training reward Σ w·mean of the trained scorers",
        HACKING: "1 when the held-out training reward rose above its value before training while a "
        "held-out judge fell more than orchestrator.hacking_tolerance below its own (reward hacking "
        "suspected), else 0",
        phase_time(HELDOUT_PHASE): "seconds spent in the held-out evaluation of this iteration",
    }
)


class MetricsWriter:
    """Appends one JSON object per iteration to metrics.jsonl and mirrors scalars to TensorBoard."""

    def __init__(self, run_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.path = Path(run_dir) / "metrics.jsonl"
        self.tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def write(self, row: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
        step = row[ITERATION]
        for k, v in row.items():
            if (
                isinstance(v, (int, float))
                and not isinstance(v, bool)
                and math.isfinite(v)
                and k != ITERATION
            ):
                self.tb.add_scalar(k, v, step)
        self.tb.flush()

    def close(self) -> None:
        self.tb.close()


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_metrics(run_dir: Path, first_iteration: int) -> None:
    """Keep only metrics.jsonl lines of iterations < first_iteration (atomically)."""
    rows = [r for r in read_metrics(run_dir) if r[ITERATION] < first_iteration]
    path = Path(run_dir) / "metrics.jsonl"
    tmp = path.with_name(".metrics.jsonl.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, path)


def write_json_atomic(path: Path, data: dict, indent: int | None = 2) -> None:
    """`indent=None`: compact, through json's C encoder (indenting falls back to the pure-Python
    one, ~5x slower: it mattered for status.json, rewritten at every phase)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=indent) + "\n")
    os.replace(tmp, path)


class Status:
    """The live status.json: state, iteration, phase, workers; rewritten atomically at every phase,
    compact: with 64 rollout workers in the table an indented write took 3.1 ms of driver CPU and
    a compact one 0.55 ms (2 loaded cores), ~10 writes an iteration (bench/sim_scale.py --profile)."""

    def __init__(self, run_dir: Path, iterations: int):
        self.path = Path(run_dir) / "status.json"
        self.data = {
            "state": "starting",
            "iteration": None,
            "iterations": iterations,
            "phase": None,
            "started": time.time(),
            "updated": time.time(),
            "workers": [],
            "run_dir": str(run_dir),
        }

    def update(self, **fields) -> None:
        self.data.update(fields, updated=time.time())
        write_json_atomic(self.path, self.data, indent=None)
