"""Does the default run learn without hacking? Each world's config as the README runs it, 3 seeds.

    python bench/learning.py [--world shapes|text] [--iterations N] [--checkpoint-every 3]
                             [--seeds 0 1 2] [--variants ...]

Each run is `raygrpo train --config CONFIG` (shapes: deploy/configs/tiny.yaml, preference +
alignment vs preference only; text: deploy/configs/tiny_text.yaml, the OCR reward), for the
config's own number of iterations unless --iterations, reward-hacking monitor included; before/
after numbers come from `raygrpo eval` on the world's held-out prompts (ODE, 4 samples per
prompt) for the base model and every checkpoint, with the config's held-out judges (fidelity;
text: PP-OCRv6 too). The monitor's own checks during training give the hacking flags. Writes
bench/results/learning.{json,md} (shapes) or learning_text.{json,md}. The target judge is the
world's measure of the task (shapes: preference; text: the held-out PP-OCRv6); gap_closed =
(after − before) / (1 − before).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CONFIG, RESULTS, evaluate, machine, run  # noqa: E402

WORLDS = {  # config, held-out prompts, target judge, the second column of the table, variants
    "shapes": (
        CONFIG,
        "tiny:heldout",
        "preference",
        "alignment",
        {
            "preference+alignment": [],
            "preference-only": ["reward.scorers=[{name: preference, kind: preference}]"],
        },
    ),
    "text": ("deploy/configs/tiny_text.yaml", "tiny:text:heldout", "ocr_heldout", "ocr", {"ocr": []}),
}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--iterations", type=int, help="default: the config's orchestrator.iterations")
    p.add_argument("--checkpoint-every", type=int, default=3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--world", choices=tuple(WORLDS), default="shapes")
    p.add_argument("--variants", nargs="+", help="default: all of the world's")
    p.add_argument("--note", help="a paragraph to end the markdown with (the machine's state, caveats)")
    args = p.parse_args()
    config, prompts, judge, second, variants = WORLDS[args.world]
    name = "learning" if args.world == "shapes" else f"learning_{args.world}"
    work = RESULTS / "tmp" / name
    work.mkdir(parents=True, exist_ok=True)
    base = evaluate("base", work / "base.json", config, prompts)
    result = {"base": base, "judge": judge, "second": second, "runs": []}
    for variant in args.variants or variants:
        extra = variants[variant]
        for seed in args.seeds:
            run_dir = work / f"{variant}-seed{seed}"
            start = time.time()
            run(
                [
                    "raygrpo",
                    "train",
                    "--config",
                    config,
                    "--run-dir",
                    str(run_dir),
                    f"orchestrator.seed={seed}",
                    *([f"orchestrator.iterations={args.iterations}"] if args.iterations else []),
                    f"orchestrator.checkpoint_every={args.checkpoint_every}",
                    "orchestrator.eval_before_after=false",
                    *extra,
                ]
            )
            wall = time.time() - start
            rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
            curve = []
            for ckpt in sorted((run_dir / "checkpoints").glob("iter_*")):
                it = int(ckpt.name.split("_")[1])
                ev = evaluate(str(ckpt), work / f"{variant}-seed{seed}-{it}.json", config, prompts)
                curve.append({"iteration": it, "train_seconds": rows[it - 1]["elapsed_s"], **ev})
            after = curve[-1]
            result["runs"].append(
                {
                    "variant": variant,
                    "seed": seed,
                    "iterations": len(rows),
                    "wall_seconds": round(wall, 1),
                    "train_seconds": round(after["train_seconds"], 1),
                    f"{judge}_before": base[judge],
                    f"{judge}_after": after[judge],
                    f"{second}_before": base[second],
                    f"{second}_after": after[second],
                    "gap_closed": (after[judge] - base[judge]) / (1 - base[judge]),
                    f"{second}_change": after[second] - base[second],
                    "fidelity_kept": after["fidelity"] / base["fidelity"],
                    "hacking_flags": sum(r.get("heldout/hacking", 0) for r in rows),
                    "monitor_curve": [
                        {
                            k.removeprefix("heldout/").removesuffix("/mean"): v
                            for k, v in r.items()
                            if k.startswith("heldout/")
                        }
                        | {"iteration": r["iteration"]}
                        for r in rows
                        if "heldout/hacking" in r
                    ],
                    "heldout_curve": curve,
                    "train_reward_curve": [
                        {k: r[k] for k in r if k.startswith("reward/") and k.endswith("/mean")}
                        | {"iteration": r["iteration"]}
                        for r in rows
                    ],
                }
            )
            print(json.dumps({k: v for k, v in result["runs"][-1].items() if "curve" not in k}), flush=True)
    result["setup"] = {
        "command": "python bench/learning.py " + " ".join(sys.argv[1:]),
        "note": args.note,
        "config": config,
        "machine": machine(),
        "eval": f"raygrpo eval --prompts {prompts} (4 samples per prompt, ODE, seed 0)",
    }
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = markdown(result) + ([f"\n{args.note}"] if args.note else [])
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def markdown(result: dict) -> list[str]:
    """One row per run: the held-out target judge, the second judge and fidelity at the first
    checkpoint and at the end, and the monitor's hacking flags over the run."""
    judge, second = result.get("judge", "preference"), result.get("second", "alignment")
    lines = [
        f"| variant | seed | first eval: iteration (train s) | {judge} | gap closed | {second} | "
        f"fidelity | end: iteration (train s) | {judge} | gap closed | {second} | fidelity (kept) | "
        "hacking flags |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    base = result["base"]
    for r in result["runs"]:
        cells = []
        for c in (r["heldout_curve"][0], r["heldout_curve"][-1]):
            gap = (c[judge] - base[judge]) / (1 - base[judge])
            cells.append(
                f"{c['iteration']} ({c['train_seconds']:.0f} s) | {c[judge]:.3f} | {100 * gap:.0f} % | "
                f"{c[second]:.3f} ({c[second] - base[second]:+.3f}) | {c['fidelity']:.3f}"
            )
        cells[-1] += f" ({100 * r['fidelity_kept']:.0f} %) | {r['hacking_flags']}"
        lines.append(f"| {r['variant']} | {r['seed']} | " + " | ".join(cells) + " |")
    lines.append(
        f"\nBase model (before): {judge} {base[judge]:.3f}, {second} {base[second]:.3f}, "
        f"fidelity {base['fidelity']:.3f}. train s counts from the run's start, actor start-up included. "
        "Hacking flags: the monitor's warnings during the run (held-out training reward up while "
        "a held-out judge fell > 10 % below its start)."
    )
    return lines


if __name__ == "__main__":
    main()
