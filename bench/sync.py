"""Weight-sync cost per version: time and peak extra memory on each side, LoRA-size and full-size.

    python bench/sync.py                     # -> bench/results/sync.json + sync.md
    python bench/sync.py --sizes-gb 0.05 0.1 --out /tmp/sync   # a quick smoke run

A CPU / gloo proxy of the GPU path (no GPU here; say so with every figure): a sender process
(learner rank 0) and a receiver process (a rollout worker) each hold a bf16 weight set shaped like
FLUX.1-dev's (the real LoRA r64 adapters of the deploy configs, 104.6 M weights = 200 MiB, and
prefixes of the full transformer's tensors for the full-size sets), and run exactly what
LearnerWorker.broadcast_weights and RolloutWorker.receive_weights run:

    sender     per bucket: pack the bucket from the live weights, broadcast it, digest its tensors
    receiver   per bucket: receive into one buffer, copy into the live weights; then the checksum

Peak extra memory is what the sync allocates beyond the weights themselves (tensor storage, by
bench/memory_model.LiveBytes): one packed bucket and the checksum's int64 temporaries, never a
copy of the weight set. The full set (23.8 GB) does not fit this machine (24 GiB for everyone),
so sizes up to a few GB are measured and the seconds per GB are fitted (least squares) and
extrapolated. One-time per-process costs (the first dispatch-mode call imports torch._dynamo; the
checksum's weight table) are paid before the clock starts, as a worker pays them once, not per
version. For comparison, the path this replaced: a CPU clone of every weight and a blake2b hash
of its bytes on each side (`--baseline`, measured on the same sets).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from learner.engine import free_port  # noqa: E402
from memory_model import FLUX_DEV, LiveBytes, build_transformer  # noqa: E402
from rollout.config import DEFAULT_LORA_TARGETS  # noqa: E402
from rollout.weight_sync import Checksum, WeightGroup, pack, plan_buckets, state_checksum, tensor_specs  # noqa: E402

FULL_GB = 23.8  # FLUX.1-dev's 11.9 B weights in bf16


def flux_shapes(lora: bool) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of FLUX.1-dev's trainable tensors: the LoRA r64 adapters or every weight."""
    model = build_transformer("flux", FLUX_DEV)  # meta: no memory
    if lora:
        from peft import LoraConfig

        model.requires_grad_(False)
        model.add_adapter(LoraConfig(r=64, lora_alpha=128, target_modules=list(DEFAULT_LORA_TARGETS)))
    return [(n, tuple(p.shape)) for n, p in model.named_parameters() if p.requires_grad]


def weight_set(shapes, gigabytes: float | None, seed: int = 0) -> dict[str, torch.Tensor]:
    """bf16 tensors of the first shapes holding `gigabytes` (all of them when None)."""
    g = torch.Generator().manual_seed(seed)
    state, total = {}, 0
    for name, shape in shapes:
        n = 1
        for d in shape:
            n *= d
        if gigabytes is not None and total + 2 * n > gigabytes * 1e9:
            break
        state[name] = (torch.randn(n, generator=g) * 0.02).to(torch.bfloat16).view(shape)
        total += 2 * n
    return state


def _side(rank: int, port: int, shapes, gigabytes, bucket_bytes: int, baseline: bool, out) -> None:
    torch.set_num_threads(1)
    state = weight_set(
        shapes, gigabytes, seed=0 if rank == 0 else 1
    )  # the receiver starts from other weights
    plan = plan_buckets(tensor_specs(state), bucket_bytes)
    group = WeightGroup("127.0.0.1", port, rank, 2, "gloo", timeout_s=600)
    # once per process, not per version: a dispatch mode's first use imports torch._dynamo (seconds)
    # and the checksum builds its weight table (16 MiB, kept); neither belongs in a sync's time
    with LiveBytes():
        Checksum().update("warm-up", torch.zeros(1, dtype=torch.bfloat16))
    tracker = LiveBytes(ignore=list(state.values()))
    start = time.perf_counter()
    with tracker:
        if rank == 0:
            checksum = Checksum()
            for bucket in plan:
                group.send_bucket(pack(state, bucket))
                for spec in bucket:
                    checksum.update(spec.name, state[spec.name])
            digest = checksum.hexdigest()
        else:
            group.receive(plan, into=state)
            digest = state_checksum(state)
    seconds = time.perf_counter() - start
    group.close()
    result = {
        "rank": rank,
        "seconds": seconds,
        "peak_extra_mb": tracker.peak / 1e6,
        "checksum": digest,
        "gb": sum(t.numel() * 2 for t in state.values()) / 1e9,
        "tensors": len(state),
        "buckets": len(plan),
    }
    if baseline:  # the replaced path: a CPU clone of every weight + blake2b over its bytes
        tracker = LiveBytes(ignore=list(state.values()))
        start = time.perf_counter()
        with tracker:
            copy = {k: v.detach().cpu().clone() for k, v in state.items()}
            h = hashlib.blake2b(digest_size=16)
            for k in sorted(copy):
                h.update(copy[k].view(torch.uint8).numpy().tobytes())
            del copy
        result.update(baseline_seconds=time.perf_counter() - start, baseline_peak_extra_mb=tracker.peak / 1e6)
    out.put(result)


def measure(shapes, gigabytes, bucket_bytes: int, baseline: bool) -> dict:
    ctx = mp.get_context("spawn")
    out, port = ctx.Queue(), free_port()
    procs = [
        ctx.Process(target=_side, args=(r, port, shapes, gigabytes, bucket_bytes, baseline, out))
        for r in (0, 1)
    ]
    for p in procs:
        p.start()
    sides = sorted([out.get(timeout=1800) for _ in procs], key=lambda r: r["rank"])
    for p in procs:
        p.join()
    sender, receiver = sides
    if sender["checksum"] != receiver["checksum"]:
        raise RuntimeError("the receiver's checksum differs from the sender's")
    return {
        "gb": sender["gb"],
        "tensors": sender["tensors"],
        "buckets": sender["buckets"],
        "sender": {
            k: v for k, v in sender.items() if k not in ("rank", "checksum", "gb", "tensors", "buckets")
        },
        "receiver": {
            k: v for k, v in receiver.items() if k not in ("rank", "checksum", "gb", "tensors", "buckets")
        },
    }


def slope(rows: list[dict], side: str, key: str = "seconds") -> tuple[float, float]:
    """Least-squares (intercept, per GB) of rows[side][key] against rows' GB."""
    xs, ys = [r["gb"] for r in rows], [r[side][key] for r in rows]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / max(sum((x - mx) ** 2 for x in xs), 1e-12)
    return my - b * mx, b


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes-gb", type=float, nargs="+", default=[0.5, 1.0, 1.5], help="full-size proxies")
    p.add_argument("--bucket-mb", type=float, default=256, help="rollout.sync_bucket_mb")
    p.add_argument("--no-baseline", action="store_true", help="skip the clone + blake2b comparison")
    p.add_argument("--out", default="bench/results/sync")
    args = p.parse_args()
    bucket = int(args.bucket_mb * 2**20)
    baseline = not args.no_baseline
    lora = measure(flux_shapes(lora=True), None, bucket, baseline)
    print(
        f"LoRA {lora['gb']:.3f} GB: send {lora['sender']['seconds']:.2f} s, "
        f"receive {lora['receiver']['seconds']:.2f} s",
        flush=True,
    )
    full_shapes = flux_shapes(lora=False)
    full = []
    for gb in args.sizes_gb:
        full.append(measure(full_shapes, gb, bucket, baseline))
        print(
            f"full-size prefix {full[-1]['gb']:.2f} GB: send {full[-1]['sender']['seconds']:.2f} s, "
            f"receive {full[-1]['receiver']['seconds']:.2f} s",
            flush=True,
        )
    fit = {side: dict(zip(("intercept_s", "s_per_gb"), slope(full, side))) for side in ("sender", "receiver")}
    for side in fit:
        fit[side]["extrapolated_full_s"] = fit[side]["intercept_s"] + fit[side]["s_per_gb"] * FULL_GB
    result = {
        "setup": {
            "command": "python bench/sync.py " + " ".join(sys.argv[1:]),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU + gloo proxy (no GPU)",
            "torch": torch.__version__,
            "bucket_mb": args.bucket_mb,
        },
        "lora": lora,
        "full_prefixes": full,
        "full_fit": fit,
        "full_gb": FULL_GB,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps(result, indent=1) + "\n")
    md = table(result)
    Path(args.out + ".md").write_text(md)
    print(md)


def table(r: dict) -> str:
    lines = [
        "| weight set | GB | buckets | sender s | receiver s | sender peak extra MB | receiver peak extra MB "
        "| clone + blake2b s (one side) | its extra MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in [("FLUX LoRA r64", r["lora"])] + [("FLUX prefix", x) for x in r["full_prefixes"]]:
        s, v = row["sender"], row["receiver"]
        base = (
            f"{s['baseline_seconds']:.2f} | {s['baseline_peak_extra_mb']:.0f}"
            if "baseline_seconds" in s
            else " | "
        )
        lines.append(
            f"| {name} | {row['gb']:.2f} | {row['buckets']} | {s['seconds']:.2f} | {v['seconds']:.2f} | "
            f"{s['peak_extra_mb']:.0f} | {v['peak_extra_mb']:.0f} | {base} |"
        )
    f = r["full_fit"]
    lines.append(
        f"\nFull FLUX.1-dev ({r['full_gb']} GB bf16), extrapolated: "
        f"sender {f['sender']['s_per_gb']:.2f} s/GB "
        f"→ {f['sender']['extrapolated_full_s']:.1f} s, receiver {f['receiver']['s_per_gb']:.2f} s/GB → "
        f"{f['receiver']['extrapolated_full_s']:.1f} s (CPU + gloo; a GPU + NCCL path is far faster)."
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
