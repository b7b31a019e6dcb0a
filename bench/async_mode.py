"""Async ÷ sync wall time per iteration, against the ideal overlap measured in the same run.

    python bench/async_mode.py [--iterations 12] [--warmup 2] [--repeats 1]

The same config trains in `orchestrator.mode=sync` and `async` (alternating, `repeats` times
each) on one private Ray: 1 rollout worker and 1 learner rank, one core each (Ray num_cpus=2,
torch_threads=1). From the sync runs' phase times (medians over the iterations after
`warmup`): r = rollout, l = score + advantages + update (what async overlaps with the next
rollouts), o = sample + sync (never overlapped; in async, sync also waits for the rollouts
it could not hide, so o is taken from the sync runs).

    ideal           = max(r, l) / (r + l)              the issue's target: measured within 10 %
    ideal_overhead  = (max(r, l) + o) / (r + l + o)    the same, counting what cannot overlap
    measured        = median iteration wall (async) / median iteration wall (sync)

Iteration wall = the gap between consecutive metrics lines' elapsed_s. Writes
bench/results/async.json and async.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from ray_bench import config, machine, median, start_ray, write

OVERLAPPED = ("score", "advantages", "update")
NOT_OVERLAPPED = ("sample", "sync")  # (the log phase is timed after its own line is written)


def run(mode: str, iterations: int, overrides: list[str], work: Path) -> list[dict]:
    from orchestrator.loop import train
    from orchestrator.metrics import read_metrics

    cfg = config(
        [
            f"orchestrator.mode={mode}",
            f"orchestrator.iterations={iterations}",
            f"orchestrator.checkpoint_every={iterations + 1}",
            f"orchestrator.sample_every={iterations + 1}",
            "rollout.num_workers=1",
            "rollout.num_cpus=1",
            "rollout.torch_threads=1",
            "learner.num_cpus=1",
            "learner.torch_threads=1",
            *overrides,
        ]
    )
    run_dir = Path(tempfile.mkdtemp(prefix=f"{mode}-", dir=work))
    train(cfg, run_dir)
    return read_metrics(run_dir)


def iteration_walls(rows: list[dict], warmup: int) -> list[float]:
    return [b["elapsed_s"] - a["elapsed_s"] for a, b in zip(rows, rows[1:])][max(warmup - 1, 0) :]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--iterations", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2, help="first iterations left out of every median")
    p.add_argument("--repeats", type=int, default=1, help="sync/async run pairs")
    p.add_argument("overrides", nargs="*", help="extra config overrides key.sub=value")
    args = p.parse_args()
    start_ray(num_cpus=2)
    work = Path(__file__).resolve().parent / "results" / "tmp" / "async"
    work.mkdir(parents=True, exist_ok=True)
    rows = {"sync": [], "async": []}
    for _ in range(args.repeats):
        for mode in ("sync", "async"):
            rows[mode] += [run(mode, args.iterations, args.overrides, work)]
    walls = {m: median([w for rs in rows[m] for w in iteration_walls(rs, args.warmup)]) for m in rows}
    steady = [r for rs in rows["sync"] for r in rs[args.warmup :]]

    def phase(names):
        return median([sum(r[f"time/{n}"] for n in names) for r in steady])

    r, learn, o = phase(("rollout",)), phase(OVERLAPPED), phase(NOT_OVERLAPPED)
    ideal, ideal_o = max(r, learn) / (r + learn), (max(r, learn) + o) / (r + learn + o)
    measured = walls["async"] / walls["sync"]
    result = {
        "measured_async_over_sync": measured,
        "ideal": ideal,
        "ideal_with_overhead": ideal_o,
        "relative_gap_to_ideal": measured / ideal - 1,
        "target": "within 10 % of ideal",
        "meets_target": abs(measured / ideal - 1) <= 0.10,
        "sync_phases_median_s": {"rollout r": r, "score+advantages+update l": learn, "sample+sync o": o},
        "iteration_wall_median_s": walls,
        "staleness_async": sorted({row["staleness"] for rs in rows["async"] for row in rs}),
        "setup": {
            "command": "python bench/async_mode.py " + " ".join(sys.argv[1:]),
            **machine(),
            "ray_num_cpus": 2,
            "resources": "1 rollout worker, 1 learner rank; num_cpus=1, torch_threads=1 each",
            "iterations": args.iterations,
            "warmup": args.warmup,
            "repeats": args.repeats,
        },
    }
    table = [
        "| | seconds / iteration |",
        "|---|---|",
        f"| sync | {walls['sync']:.2f} (r {r:.2f} + l {learn:.2f} + o {o:.2f}) |",
        f"| async | {walls['async']:.2f} |",
        "",
        "| async ÷ sync | ideal max(r,l)/(r+l) | gap | ideal incl. o |",
        "|---|---|---|---|",
        f"| {measured:.3f} | {ideal:.3f} | {100 * (measured / ideal - 1):+.1f} % (target ±10 %) "
        f"| {ideal_o:.3f} |",
    ]
    write("async", result, table)


if __name__ == "__main__":
    main()
