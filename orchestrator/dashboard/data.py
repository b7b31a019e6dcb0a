"""What the dashboard knows about a run, read from its run dir and nothing else.

    status.json     live state, iteration, phase, worker table, dashboard / Ray dashboard URLs
    metrics.jsonl   one row per iteration (names: orchestrator/metrics.py)
    samples/        iter_XXXXX.png grids, iter_XXXXX.json (prompt and rewards per sample),
                    eval_before.png / eval_after.png

Every reader tolerates a run that is still writing: a missing file, a half-written last
line. Nothing here writes. Non-finite numbers become null, since JSON has no NaN.
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

from orchestrator import metrics as M

TERMINAL = ("finished", "failed")
ETA_WINDOW = 5  # iterations averaged for the ETA
SAMPLE_NAME = re.compile(r"^(iter_\d{5}|eval_before|eval_after)\.png$")


def finite(value):
    """`value` with every NaN / ±inf replaced by None, recursively (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def iteration_seconds(row: dict) -> float:
    """Wall seconds of one iteration: the sum of its timed phases."""
    return sum(v for k, v in row.items() if k.startswith("time/") and isinstance(v, (int, float)))


def eta_seconds(status: dict, rows: list[dict]) -> float | None:
    """Seconds until the last iteration is done: remaining iterations × the mean wall time
    of the last ETA_WINDOW iterations. 0 once the run ended; None before any iteration."""
    if status.get("state") in TERMINAL:
        return 0.0
    if not rows:
        return None
    done = rows[-1][M.ITERATION] + 1
    recent = rows[-ETA_WINDOW:]
    per_iteration = sum(iteration_seconds(r) for r in recent) / len(recent)
    return max(status.get("iterations", done) - done, 0) * per_iteration


def elapsed_seconds(status: dict, now: float) -> float | None:
    """Seconds since the run (or resume) started; frozen at the last update once it ended."""
    if "started" not in status:
        return None
    end = status.get("updated", now) if status.get("state") in TERMINAL else now
    return max(end - status["started"], 0.0)


class RunDir:
    """Read-only views of one run dir, as JSON-ready dicts."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._metrics_key: tuple | None = None
        self._metrics: list[dict] = []

    def metrics(self) -> list[dict]:
        """metrics.jsonl rows; re-parsed only when the file changed, a torn last line skipped."""
        path = self.path / "metrics.jsonl"
        try:
            st = path.stat()
        except FileNotFoundError:
            return []
        key = (st.st_size, st.st_mtime_ns)
        if key != self._metrics_key:
            rows = []
            for line in path.read_text().splitlines():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    break  # the writer is mid-line: the rest comes with the next read
            self._metrics_key, self._metrics = key, finite(rows)
        return self._metrics

    def metrics_since(self, since: int) -> dict:
        """Rows from index `since` on. `start` says where they begin: 0 when the file is
        shorter than `since` (a resumed run dropped rows), and the page then starts over."""
        rows = self.metrics()
        start = since if 0 <= since <= len(rows) else 0
        return {"start": start, "total": len(rows), "rows": rows[start:]}

    def status(self, now: float | None = None) -> dict:
        """status.json plus what the page derives from it: elapsed, ETA, seconds per iteration, links."""
        now = time.time() if now is None else now
        try:
            status = json.loads((self.path / "status.json").read_text())
        except FileNotFoundError:
            status = {"state": "unknown", "workers": []}
        status.pop("last_metrics", None)  # the page has the rows; keep the poll small
        rows = self.metrics()
        recent = rows[-ETA_WINDOW:]
        status.update(
            elapsed_s=elapsed_seconds(status, now),
            eta_s=eta_seconds(status, rows),
            iteration_s=sum(iteration_seconds(r) for r in recent) / len(recent) if recent else None,
            images_per_s=rows[-1].get(M.IMAGES_PER_S) if rows else None,
            run_dir=str(self.path.resolve()),
            tensorboard_command=f"tensorboard --logdir {self.path.resolve() / 'tensorboard'}",
            now=now,
        )
        return finite(status)

    def samples(self) -> dict:
        """The sample grids: per iteration (newest first) with their prompts and rewards, and eval grids."""
        folder = self.path / "samples"
        iterations, evals = [], []
        for png in sorted(folder.glob("*.png"), reverse=True) if folder.is_dir() else []:
            if not SAMPLE_NAME.match(png.name):
                continue
            if png.name.startswith("eval_"):
                evals.append({"tag": png.stem.removeprefix("eval_"), "image": png.name})
                continue
            try:
                meta = json.loads(png.with_suffix(".json").read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                meta = None  # a run from before the dashboard: the grid without rewards
            iterations.append(
                {"iteration": int(png.stem.removeprefix("iter_")), "image": png.name, "meta": meta}
            )
        evals.sort(key=lambda e: e["tag"] != "before")  # before, then after
        return finite({"iterations": iterations, "eval": evals})

    def sample_file(self, name: str) -> Path | None:
        """The PNG `name` in samples/, or None: only grid names pass, so no path leaves samples/."""
        if not SAMPLE_NAME.match(name):
            return None
        path = self.path / "samples" / name
        return path if path.is_file() else None
