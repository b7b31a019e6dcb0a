"""Shared by the operating benchmarks (soak.py, async_mode.py, scaling.py): a private local Ray
on loopback, the config they shrink, machine facts, and the result files they write."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CONFIG = "deploy/configs/tiny.yaml"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from common import WORKLOAD  # noqa: E402  (the system benchmarks' workload)


def start_ray(num_cpus: int):
    """A private Ray on 127.0.0.1 (token auth off: nothing outside this machine reaches it)."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, num_cpus=num_cpus, log_to_driver=False)
    return ray


def config(overrides: list[str]):
    from orchestrator.config import load_config

    return load_config(ROOT / CONFIG, [*WORKLOAD, "orchestrator.eval_before_after=false", *overrides])


def machine() -> dict:
    import ray
    import torch

    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "torch": torch.__version__,
        "ray": ray.__version__,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def write(name: str, data: dict, table: list[str]) -> None:
    """bench/results/<name>.json and <name>.md (the table)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


def median(xs: list[float]) -> float:
    xs = sorted(xs)
    n = len(xs)
    return (xs[n // 2] + xs[(n - 1) // 2]) / 2
