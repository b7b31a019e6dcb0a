"""What does the Ray actor system cost over a plain single-process loop?

    python bench/overhead.py [--iterations 12] [--repeats 2] [--threads 2]

The same config and iterations run through `raygrpo train` (Ray actors, object store,
DeepSpeed) and `raygrpo train --no-ray` (the same worker classes called in one process,
`orchestrator/local.py`), alternating, one rollout worker and one learner rank, 2 torch
threads everywhere (`--threads N` sets another count and writes overhead_threads{N}.*).
Per-iteration time = sum of the phase times in metrics.jsonl, the first 2 iterations (warm-up)
excluded, median per phase over iterations (robust to a burst of load from another process); the
ratio compares medians over repeats.
Writes bench/results/overhead.json and overhead.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT / "bench"))
from common import WORKLOAD  # noqa: E402

PHASES = ("sample", "rollout", "score", "advantages", "update", "sync", "log")
# LocalCluster runs a launched rollout at once, so in-process its time lands in "sample";
# the table reports the two together.
ROWS = (
    ("sample + rollout", ("sample", "rollout")),
    ("score", ("score",)),
    ("advantages", ("advantages",)),
    ("update", ("update",)),
    ("sync", ("sync",)),
    ("log", ("log",)),
)
OVERRIDES = [
    *WORKLOAD,
    "rollout.num_workers=1",
    "learner.world_size=1",
    "orchestrator.eval_before_after=false",
    "orchestrator.checkpoint_every=1000",
]


def one_run(mode: str, iterations: int, run_dir: Path, overrides: list[str]) -> dict:
    cmd = [
        "raygrpo",
        "train",
        "--config",
        "deploy/configs/tiny.yaml",
        "--run-dir",
        str(run_dir),
        f"orchestrator.iterations={iterations}",
        *overrides,
    ]
    if mode == "local":
        cmd.insert(2, "--no-ray")
    start = time.time()
    before = cpu_seconds_by_kind()
    with subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        seen = dict(before)
        while proc.poll() is None:  # a process's CPU time is readable only while it lives
            seen.update(cpu_seconds_by_kind(seen))
            time.sleep(0.5)
        _, err = proc.communicate()
    if proc.returncode:
        raise RuntimeError(err[-3000:])
    wall = time.time() - start
    cpu = {}
    for (kind, pid), secs in seen.items():
        cpu[kind] = cpu.get(kind, 0.0) + secs - before.get((kind, pid), 0.0)
    every = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows = every[2:]
    # medians: a burst of load from another process should not decide the ratio
    phases = {p: statistics.median(r.get(f"time/{p}", 0.0) for r in rows) for p in PHASES}
    # log line to log line: every phase plus what no phase times (the log phase itself — its
    # time/ key is written before it ends —, the worker table refresh and the rescale check)
    walls = [b["elapsed_s"] - a["elapsed_s"] for a, b in zip(every[1:], every[2:])]
    # seconds each worker spent inside its own methods, per iteration (warm-up included): compute
    # alone, without refs, object store or scheduling — where a phase's extra time comes from
    workers = json.loads((run_dir / "status.json").read_text())["workers"]
    busy = {
        role: sum(w.get("seconds") or 0 for w in workers if w["role"] == role) / iterations
        for role in ("rollout", "learner")
    }
    return {
        "iteration_s": sum(phases.values()),
        "iteration_wall_s": statistics.median(walls),
        "phases_s": phases,
        "busy_s_per_iteration": busy,
        "process_wall_s": wall,
        "cpu_cores_by_kind": {k: round(v / wall, 3) for k, v in sorted(cpu.items())},
    }


def cpu_seconds_by_kind(known: dict | None = None) -> dict:
    """{(kind, pid): user + system CPU seconds} of this machine's processes, from /proc: the
    compute actors (`ray::RolloutWorker` …), the driver (`raygrpo train`) and Ray's own
    processes (raylet, GCS, dashboard, agents, log monitor, idle workers). The Ray system's
    share of 2 cores is CPU the compute actors do not get: why the same method is slower in an
    actor than in-process (busy_s_per_iteration)."""
    out, tick = {}, os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        kind = process_kind(cmdline)
        if kind is not None:
            out[(kind, int(entry.name))] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return out


def process_kind(cmdline: str) -> str | None:
    for actor in ("RolloutWorker", "LearnerWorker", "RewardWorker"):
        if f"ray::{actor}" in cmdline:
            return f"actor {actor}"
    if "raygrpo train" in cmdline or ("orchestrator" in cmdline and "train" in cmdline):
        return "driver"
    if any(
        k in cmdline
        for k in (
            "raylet",
            "gcs_server",
            "dashboard",
            "log_monitor",
            "ray::",
            "runtime_env",
            "monitor.py",
            "default_worker.py",
        )
    ):
        return "ray system"
    return None


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--iterations", type=int, default=12)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument(
        "--threads", type=int, default=2, help="torch threads of the rollout worker and the learner"
    )
    args = p.parse_args()
    overrides = [*OVERRIDES, f"rollout.torch_threads={args.threads}", f"learner.torch_threads={args.threads}"]
    name = "overhead" if args.threads == 2 else f"overhead_threads{args.threads}"
    runs = {"ray": [], "local": []}
    for rep in range(args.repeats):
        for mode in ("ray", "local"):
            run_dir = RESULTS / "tmp" / f"overhead-{mode}-{rep}"
            subprocess.run(["rm", "-rf", str(run_dir)])
            runs[mode].append(one_run(mode, args.iterations, run_dir, overrides))
            print(mode, rep, round(runs[mode][-1]["iteration_s"], 3), flush=True)
    med = {m: statistics.median(r["iteration_s"] for r in rs) for m, rs in runs.items()}
    med_wall = {m: statistics.median(r["iteration_wall_s"] for r in rs) for m, rs in runs.items()}
    phases = {
        m: {ph: statistics.median(r["phases_s"][ph] for r in rs) for ph in PHASES} for m, rs in runs.items()
    }
    busy = {
        m: {
            role: statistics.median(r["busy_s_per_iteration"][role] for r in rs)
            for role in ("rollout", "learner")
        }
        for m, rs in runs.items()
    }
    result = {
        "ratio_ray_over_local": med["ray"] / med["local"],
        "target": 1.05,
        "iteration_s": med,
        "ratio_ray_over_local_wall": med_wall["ray"] / med_wall["local"],
        "iteration_wall_s": med_wall,
        "phases_s": phases,
        "busy_s_per_iteration": busy,
        # the Ray total with each worker's compute as fast as in-process: what the actor system's
        # own work (refs, object store, scheduling, the driver's calls) costs
        "ratio_orchestration_only": (med["ray"] - sum(busy["ray"].values()) + sum(busy["local"].values()))
        / med["local"],
        "cpu_cores_by_kind": {
            m: {
                k: statistics.median(r["cpu_cores_by_kind"].get(k, 0.0) for r in rs)
                for k in sorted({k for r in rs for k in r["cpu_cores_by_kind"]})
            }
            for m, rs in runs.items()
        },
        "startup_and_total_wall_s": {
            m: [round(r["process_wall_s"], 1) for r in rs] for m, rs in runs.items()
        },
        "runs": runs,
        "setup": {
            "command": "python bench/overhead.py " + " ".join(sys.argv[1:]),
            "overrides": overrides,
            "iterations": args.iterations,
            "repeats": args.repeats,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        },
    }
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["| phase | Ray (s/iter) | single process (s/iter) |", "|---|---|---|"]
    for label, parts in ROWS:
        ray_s, local_s = (sum(phases[m][p] for p in parts) for m in ("ray", "local"))
        lines.append(f"| {label} | {ray_s:.3f} | {local_s:.3f} |")
    lines.append(f"| **total** | **{med['ray']:.3f}** | **{med['local']:.3f}** |")
    lines.append(
        f"| untimed (log, worker table, rescale check) | {med_wall['ray'] - med['ray']:.3f} | "
        f"{med_wall['local'] - med['local']:.3f} |"
    )
    lines.append(
        f"| **iteration wall (log to log)** | **{med_wall['ray']:.3f}** | **{med_wall['local']:.3f}** |"
    )
    for role in ("rollout", "learner"):
        lines.append(
            f"| {role} worker busy (inside its methods) | {busy['ray'][role]:.3f} "
            f"| {busy['local'][role]:.3f} |"
        )
    lines.append(
        f"\nRay ÷ single process = **{result['ratio_ray_over_local']:.3f}** over the timed phases, "
        f"**{result['ratio_ray_over_local_wall']:.3f}** over the whole iteration (target ≤ 1.05); "
        f"with each worker's compute as fast as in-process (busy rows), "
        f"**{result['ratio_orchestration_only']:.3f}**"
    )
    cores = result["cpu_cores_by_kind"]
    lines.append(
        "\nCPU cores used, mean over each whole run (start-up included), by process kind: "
        + "; ".join(f"{m}: " + ", ".join(f"{k} {v:.2f}" for k, v in cores[m].items()) for m in cores)
    )
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
