"""How fast do the OCR judges read, by batch size and ONNX Runtime threads? (One process, one run:
the figures are ratios to batch 16 with 1 thread, the scorer config's default batch.)

    python bench/ocr_speed.py [--images 192] [--batches 1 2 4 8 16 64] [--threads 1 2] [--scenes 16]

Reads the text world's held-out strings rendered with noise added (so the models have work to do),
checks that every batch size reads the same strings, and writes bench/results/ocr_speed.{json,md}.
Then the real models' case: 512² scenes (each string on a board at a random place), read through
text detection as FLUX / SD3.5 images are (reward/ocr.py), with the share read exactly right.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine  # noqa: E402

from reward.ocr import PPOCRv4Scorer, PPOCRv6Scorer  # noqa: E402
from rollout.tiny.text_world import parse_prompt, prompts, render_prompts  # noqa: E402

SCORERS = {"ocr (PP-OCRv4)": PPOCRv4Scorer, "ocr_heldout (PP-OCRv6)": PPOCRv6Scorer}
REFERENCE = (16, 1)  # ScorerConfig.batch_size's default, ONNX threads of a num_cpus=0 reward actor
SCENE = 512  # px: SD3.5 at Flow-GRPO's resolution


def scenes(texts: list[str], rng: np.random.Generator) -> np.ndarray:
    """uint8 [B, 512, 512, 3]: each text in dark 40-px DejaVu Sans Bold on a light board placed at
    random on a random mid-tone background."""
    font = ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts/ttf/DejaVuSans-Bold.ttf"), 40)
    out = []
    for text in texts:
        image = Image.new("RGB", (SCENE, SCENE), tuple(int(v) for v in rng.integers(40, 160, 3)))
        draw = ImageDraw.Draw(image)
        x, y = (int(v) for v in rng.integers(20, SCENE - 220, 2))
        draw.rectangle((x, y, x + 200, y + 70), fill=tuple(int(v) for v in rng.integers(200, 256, 3)))
        draw.text((x + 15, y + 10), text, font=font, fill=tuple(int(v) for v in rng.integers(0, 50, 3)))
        out.append(np.asarray(image))
    return np.stack(out)


def scene_rows(texts: list[str], threads: list[int], rng: np.random.Generator) -> list[dict]:
    """ms per 512² scene through detection + recognition, and the share read exactly right."""
    images, targets, rows = scenes([parse_prompt(t) for t in texts], rng), texts, []
    for label, cls in SCORERS.items():
        for n in threads:
            scorer = cls(threads=n)
            scorer.read(images[:1])  # warm-up: loads the detector
            start = time.perf_counter()
            rewards = scorer.score(images, targets)
            ms = 1000 * (time.perf_counter() - start) / len(images)
            right = float(np.mean(rewards == 1.0))
            rows.append({"scorer": label, "threads": n, "ms_per_image": round(ms, 1), "read_right": right})
    return rows


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=192)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 16, 64])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--scenes", type=int, default=16, help="512² scenes read through detection")
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
    scene = scene_rows(texts[: args.scenes], args.threads, rng)
    command = "python bench/ocr_speed.py " + " ".join(sys.argv[1:])
    out = {
        "rows": rows,
        "scenes": scene,
        "setup": {
            "command": command.strip(),
            "images": args.images,
            "scenes": args.scenes,
            "machine": machine(),
        },
    }
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
        "",
        "| scorer, 512² scenes through detection | ONNX threads | ms / image | read exactly right |",
        "|---|---|---|---|",
        *(
            f"| {r['scorer']} | {r['threads']} | {r['ms_per_image']} | {100 * r['read_right']:.0f} % |"
            for r in scene
        ),
        "",
        f"{args.scenes} scenes: each held-out string on a light board at a random place of a {SCENE}² "
        "image (the real models' case: reward/ocr.py detects the text lines first). Same run.",
    ]
    (RESULTS / "ocr_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
