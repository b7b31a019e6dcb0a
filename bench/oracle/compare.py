"""Oracle step 3 (our venv): compare ours.npz with reference.npz, write bench/results/oracle.json.

python bench/oracle/compare.py --work /tmp/raygrpo_oracle [--out bench/results/oracle.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np

TOLERANCE = 1e-4


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--work", default="/tmp/raygrpo_oracle")
    p.add_argument("--out", default="bench/results/oracle.json")
    args = p.parse_args()
    work = Path(args.work)
    ours, ref = np.load(work / "ours.npz"), np.load(work / "reference.npz")
    n = len(json.loads((work / "prompts.json").read_text()))
    result = {
        "tolerance": TOLERANCE,
        "images": n,
        "command": "bash bench/oracle/run.sh",
        "ours": json.loads((work / "ours.json").read_text()),
        "reference": json.loads((work / "reference.json").read_text()),
        "machine": f"{platform.machine()}, CPU, float32",
        "models": {},
        "setup": {
            "hpsv3": "tiny random Qwen2-VL base in the Qwen2-VL-7B-Instruct layout (flat 4.x config, 4.x "
            "weight names, byte-level tokenizer, official chat template and image-processor config) "
            "+ HPSv3.safetensors (<|Reward|> row, ranknet rm_head 1024/16/2); official inferencer "
            "with its HPSv3_7B.yaml pointed at that base, float32 on CPU",
            "imagereward": "ImageReward.pt at the official size for the vision side (BLIP ViT-L/16, 24 x "
            "1024, random) with a 2-layer, 768-wide BERT text encoder (med_config.json), "
            "tiny bert-base-uncased vocab; official ImageReward.load",
            "images": "6 images, 512², 720², 300x200, 257x383, 230x225, 64² (odd crop margins, up- and "
            "down-sampling), one prompt each (incl. empty and > 35 tokens); scored one at a time",
        },
    }
    ok = True
    for model in ("hpsv3", "imagereward"):
        diff = float(np.abs(ours[model] - ref[model]).max())
        pixels = max(
            float(np.abs(ours[f"{model}_pixels_{i}"] - ref[f"{model}_pixels_{i}"]).max()) for i in range(n)
        )
        entry = {
            "max_abs_score_diff": diff,
            "max_abs_preprocessed_pixel_diff": pixels,
            "scores_ours": ours[model].round(6).tolist(),
            "scores_reference": ref[model].round(6).tolist(),
            "agree": diff <= TOLERANCE,
        }
        if model == "hpsv3":
            entry["input_ids_equal"] = all(
                np.array_equal(ours[f"hpsv3_ids_{i}"], ref[f"hpsv3_ids_{i}"]) for i in range(n)
            )
        result["models"][model] = entry
        ok &= entry["agree"]
    result["models"]["clip"] = {
        "compared": False,
        "why": (
            "no reference package to run: our CLIP scorer is transformers' CLIPModel + the checkpoint's own "
            "CLIPImageProcessor, i.e. the reference implementation itself, so its test is that it loads "
            "the official layout and scores as CLIPModel does (tests/reward/test_scorers.py)"
        ),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    Path(args.out).with_suffix(".md").write_text(markdown(result))
    print(
        json.dumps(
            {
                k: {m: v for m, v in e.items() if not m.startswith("scores")}
                for k, e in result["models"].items()
            },
            indent=1,
        )
    )
    return 0 if ok else 1


def markdown(result: dict) -> str:
    """One row per scorer: the largest score and preprocessed-pixel differences, ours vs the reference."""
    ref = result["reference"]["packages"]
    lines = [
        f"| scorer | max \\|score diff\\| | max \\|pixel diff\\| | agree (≤ {result['tolerance']:g}) |",
        "|---|---|---|---|",
    ]
    for model in ("hpsv3", "imagereward"):
        e = result["models"][model]
        lines.append(
            f"| {model} | {e['max_abs_score_diff']:.2g} | {e['max_abs_preprocessed_pixel_diff']:.2g} | "
            f"{'yes' if e['agree'] else 'NO'} |"
        )
    lines.append(
        f"\n{result['images']} images; reference: hpsv3 {ref['hpsv3']}, image-reward {ref['image-reward']}, "
        f"transformers {ref['transformers']}; ours: transformers {result['ours']['transformers']}. "
        "CLIP: not compared (our scorer is transformers' CLIPModel itself)."
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
