"""Rollout throughput with 2 workers ÷ 1 worker, one core each (target ≥ 1.9).

    python bench/scaling.py [--rounds 5] [--repeats 3] [--groups 8]

One Ray cluster, rollout workers with `rollout.num_cpus=1, torch_threads=1` (Ray gets
num_cpus=3: one per rollout worker, one for the learner group that stays idle here).
The rollout actors are resized live between measurements (1, 2, 1, 2, ... workers: `repeats`
times each, alternating so background load hits both alike); after each resize one round warms
the new workers up, then `rounds` rollouts of the same `groups` prompt groups are timed
through `Rollouts.rollout` (split, launch, wait: the system's rollout phase). Writes
bench/results/scaling.json and scaling.md. Ratios are taken within this one run.
"""

from __future__ import annotations

import argparse
import sys
import time

from ray_bench import config, machine, median, start_ray, write


def measure(rollouts, groups, rounds: int) -> dict:
    rollouts.rollout(groups, 0)  # warm-up: first calls of new workers
    start = time.perf_counter()
    images = 0
    for r in range(rounds):
        batches = rollouts.rollout(groups, r + 1)
        images += sum(len(b.prompts) for b in batches)
    seconds = time.perf_counter() - start
    return {"images": images, "seconds": seconds, "images_per_s": images / seconds}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=5, help="timed rollouts per measurement")
    p.add_argument("--repeats", type=int, default=3, help="measurements per worker count (alternating)")
    p.add_argument("--groups", type=int, default=8, help="prompt groups per rollout (split over the workers)")
    p.add_argument("overrides", nargs="*", help="extra config overrides key.sub=value")
    args = p.parse_args()
    start_ray(num_cpus=3)
    from orchestrator.cluster import Cluster
    from orchestrator.config import build_plan
    from orchestrator.prompts import prompt_path, read_prompts

    cfg = config(
        [
            "rollout.num_workers=1",
            "rollout.num_cpus=1",
            "rollout.torch_threads=1",
            "learner.torch_threads=1",
            *args.overrides,
        ]
    )
    prompts = read_prompts(prompt_path("tiny:train"))[: args.groups]
    groups = list(enumerate(prompts))
    cluster = Cluster(cfg, build_plan(cfg))
    runs = {1: [], 2: []}
    try:
        for rep in range(args.repeats):
            for n in (1, 2):
                cluster.rollouts.resize(n)
                runs[n].append(measure(cluster.rollouts, groups, args.rounds))
                print(f"repeat {rep}: {n} worker(s): {runs[n][-1]['images_per_s']:.2f} images/s", flush=True)
    finally:
        cluster.shutdown()
    ips = {n: median([r["images_per_s"] for r in runs[n]]) for n in runs}
    ratio = ips[2] / ips[1]
    result = {
        "speedup_2_over_1": ratio,
        "target": 1.9,
        "meets_target": ratio >= 1.9,
        "images_per_s_median": ips,
        "per_repeat_ratio": [b["images_per_s"] / a["images_per_s"] for a, b in zip(runs[1], runs[2])],
        "runs": runs,
        "setup": {
            "command": "python bench/scaling.py " + " ".join(sys.argv[1:]),
            **machine(),
            "ray_num_cpus": 3,
            "per_worker": "rollout.num_cpus=1, rollout.torch_threads=1",
            "workload": f"{args.groups} groups x {cfg.rollout.group_size} images, "
            f"{cfg.rollout.num_steps} steps, {args.rounds} timed rollouts per measurement, "
            f"{args.repeats} measurements per count",
        },
    }
    table = [
        "| rollout workers | images/s (median) | speedup |",
        "|---|---|---|",
        f"| 1 | {ips[1]:.2f} | 1.00 |",
        f"| 2 | {ips[2]:.2f} | {ratio:.2f} (target ≥ 1.9) |",
    ]
    write("scaling", result, table)


if __name__ == "__main__":
    main()
