"""How fast do the OCR judges read, by batch size and ONNX Runtime threads? (One process, one run:
the figures are ratios to batch 16 with 1 thread, the scorer config's default batch.)

    python bench/ocr_speed.py [--images 192] [--batches 1 2 4 8 16 64] [--threads 1 2]

Reads the text world's held-out strings rendered with noise added (so the models have work to do),
checks that every batch size reads the same strings, and writes bench/results/ocr_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine  # noqa: E402

from reward.ocr import PPOCRv4Scorer, PPOCRv6Scorer  # noqa: E402
from rollout.tiny.text_world import prompts, render_prompts  # noqa: E402

SCORERS = {"ocr (PP-OCRv4)": PPOCRv4Scorer, "ocr_heldout (PP-OCRv6)": PPOCRv6Scorer}
REFERENCE = (16, 1)  # ScorerConfig.batch_size's default, ONNX threads of a num_cpus=0 reward actor


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=192)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 16, 64])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = p.parse_args()
    held = prompts("heldout")
    texts = [held[i % len(held)] for i in range(args.images)]
    rng = np.random.default_rng(0)
    images = render_prompts(texts, rng).astype(np.int16)
    images = np.clip(images + rng.integers(-60, 61, images.shape), 0, 255).astype(np.uint8)
    rows = []
    for label, cls in SCORERS.items():
        reads = {}
        for threads in args.threads:
            for batch in args.batches:
                scorer = cls(batch_size=batch, threads=threads)
                scorer.read(images[: 2 * batch])  # warm-up: ONNX Runtime plans the shape
                start = time.perf_counter()
                reads[batch, threads] = scorer.read(images)
                ms = 1000 * (time.perf_counter() - start) / len(images)
                rows.append({"scorer": label, "batch": batch, "threads": threads, "ms_per_image": ms})
        same = all(r == reads[REFERENCE] for r in reads.values())
        if not same:
            raise SystemExit(f"{label}: the batch size changed what the model reads")
        ref = next(r for r in rows if r["scorer"] == label and (r["batch"], r["threads"]) == REFERENCE)
        for r in rows:
            if r["scorer"] == label:
                r["speedup_vs_batch16_1thread"] = round(ref["ms_per_image"] / r["ms_per_image"], 2)
                r["ms_per_image"] = round(r["ms_per_image"], 1)
    command = "python bench/ocr_speed.py " + " ".join(sys.argv[1:])
    out = {"rows": rows, "setup": {"command": command.strip(), "images": args.images, "machine": machine()}}
    (RESULTS / "ocr_speed.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [
        "| scorer | batch | ONNX threads | ms / image | speed-up vs batch 16, 1 thread |",
        "|---|---|---|---|---|",
        *(
            f"| {r['scorer']} | {r['batch']} | {r['threads']} | {r['ms_per_image']} | "
            f"{r['speedup_vs_batch16_1thread']}× |"
            for r in rows
        ),
        "",
        f"`{command.strip()}` — {args.images} noisy 32 × 64 renders of the held-out strings; every batch "
        f"size and thread count read the same strings. Machine: {machine()}. Ratios within one run; the "
        "machine is shared, so read the ratios, not the milliseconds.",
    ]
    (RESULTS / "ocr_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
