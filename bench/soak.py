"""Soak: 200 tiny iterations; object-store usage and driver / worker memory must stay flat.

    python bench/soak.py [--iterations 200] [--mode sync|async]

A shrunk tiny config (2 rollout workers, 2 groups of 4, 5 steps, a checkpoint every 50
iterations) trains on a private Ray. At every iteration boundary (nothing in flight) it
records: object-store bytes used and objects (from the raylet), the driver's RSS and the
number of object refs it holds, and the RSS of every rollout / reward / learner process.
Flat means: after the first `--warmup` iterations, the mean over the last fifth of the run
exceeds the mean over the fifth after warm-up by less than max(5 %, 16 MiB) for every
process, and the object store is back to what it held then (± 16 MiB). Writes
bench/results/soak.json and soak.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from ray_bench import config, machine, start_ray, write

MiB = 2**20


def sampler_cluster():
    """Cluster whose rollouts record one memory sample per iteration boundary (where `rescale` runs)."""
    import psutil
    import ray
    from ray._private.internal_api import get_memory_info_reply, get_state_from_address

    from orchestrator.cluster import Cluster
    from orchestrator.rollouts import Rollouts

    class SamplingRollouts(Rollouts):
        samples: list = []
        cluster = None  # set by Sampling: its reward and learner rows

        def rescale(self):
            super().rescale()
            store = get_memory_info_reply(
                get_state_from_address(ray.get_runtime_context().gcs_address)
            ).store_stats
            sample = {
                "t": time.time(),
                "object_store_bytes": store.object_store_bytes_used,
                "object_store_objects": store.num_local_objects,
                "driver_rss": psutil.Process().memory_info().rss,
                "driver_refs": len(ray._private.worker.global_worker.core_worker.get_all_reference_counts()),
            }
            for w in self.worker_rows() + self.cluster.worker_rows():
                try:
                    sample[f"{w['role']}{w['index']}_rss"] = psutil.Process(w["pid"]).memory_info().rss
                except (KeyError, psutil.NoSuchProcess):
                    pass
            self.samples.append(sample)

    class Sampling(Cluster):
        rollouts_cls = SamplingRollouts
        samples = SamplingRollouts.samples

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.rollouts.cluster = self

    return Sampling


def flatness(samples: list[dict], warmup: int) -> dict:
    keys = [k for k in samples[0] if k.endswith("_rss") or k.startswith("object_store") or k == "driver_refs"]
    steady = samples[warmup:]
    fifth = max(len(steady) // 5, 1)
    out = {}
    for k in keys:
        early = [s[k] for s in steady[:fifth] if k in s]
        late = [s[k] for s in steady[-fifth:] if k in s]
        if not early or not late:
            continue
        a, b = sum(early) / len(early), sum(late) / len(late)
        if k.endswith("_rss"):
            limit = max(0.05 * a, 16 * MiB)
        elif k == "object_store_bytes":
            limit = 16 * MiB
        else:  # counts: objects in the store, refs the driver holds
            limit = max(0.05 * a, 10)
        out[k] = {"early_mean": a, "late_mean": b, "growth": b - a, "limit": limit, "flat": b - a < limit}
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--mode", choices=("sync", "async"), default="sync")
    p.add_argument("overrides", nargs="*", help="extra config overrides key.sub=value")
    args = p.parse_args()
    start_ray(num_cpus=2)
    from orchestrator.loop import train

    cfg = config(
        [
            f"orchestrator.iterations={args.iterations}",
            f"orchestrator.mode={args.mode}",
            "orchestrator.checkpoint_every=50",
            "orchestrator.sample_every=10",
            "rollout.num_workers=2",
            "rollout.num_steps=5",
            "rollout.group_size=4",
            "learner.chunks.sizes=[2, 2]",
            "learner.micro_batch=8",
            "orchestrator.prompts_per_iter=2",
            *args.overrides,
        ]
    )
    work = Path(__file__).resolve().parent / "results" / "tmp" / "soak"
    work.mkdir(parents=True, exist_ok=True)
    cluster_cls = sampler_cluster()
    start = time.time()
    train(cfg, Path(tempfile.mkdtemp(prefix="soak-", dir=work)), cluster_cls=cluster_cls)
    samples = cluster_cls.samples
    verdict = flatness(samples, args.warmup)
    result = {
        "flat": all(v["flat"] for v in verdict.values()),
        "checks": verdict,
        "wall_s": time.time() - start,
        "samples": samples,
        "setup": {
            "command": "python bench/soak.py " + " ".join(sys.argv[1:]),
            **machine(),
            "mode": args.mode,
            "iterations": args.iterations,
            "warmup": args.warmup,
            "criterion": "late fifth mean - early fifth mean (after warm-up) < max(5 %, 16 MiB) per process; "
            "object store < 16 MiB; counts < max(5 %, 10)",
        },
    }
    table = ["| what | after warm-up | at the end | growth | flat |", "|---|---|---|---|---|"]
    for k, v in verdict.items():
        scale, unit = (MiB, " MiB") if k.endswith(("_rss", "_bytes")) else (1, "")
        table.append(
            f"| {k} | {v['early_mean'] / scale:.1f}{unit} | {v['late_mean'] / scale:.1f}{unit} | "
            f"{v['growth'] / scale:+.1f}{unit} | {'yes' if v['flat'] else 'NO'} |"
        )
    write("soak", result, table)


if __name__ == "__main__":
    main()
