"""Does the default run learn? Preference + alignment vs preference only, 3 seeds each.

    python bench/learning.py [--iterations N] [--checkpoint-every 3] [--seeds 0 1 2]

Each run is `raygrpo train --config deploy/configs/tiny.yaml` (the README's default, for its
own number of iterations unless --iterations), reward-hacking monitor included; before/after
numbers come from `raygrpo eval` on the held-out prompts (ODE, 4 samples per prompt) for the
base model and every checkpoint, with the config's held-out judges (fidelity). The monitor's
own checks during training (held-out ODE, 2 samples per prompt) give the hacking flags.
Writes bench/results/learning.json and learning.md. gap_closed = (after − before) / (1 − before).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CONFIG, RESULTS, evaluate, machine, run  # noqa: E402

VARIANTS = {
    "preference+alignment": [],
    "preference-only": ["reward.scorers=[{name: preference, kind: preference}]"],
}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--iterations", type=int, help="default: the config's orchestrator.iterations")
    p.add_argument("--checkpoint-every", type=int, default=3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = p.parse_args()
    work = RESULTS / "tmp" / "learning"
    work.mkdir(parents=True, exist_ok=True)
    base = evaluate("base", work / "base.json")
    result = {"base": base, "runs": []}
    for variant, extra in VARIANTS.items():
        for seed in args.seeds:
            run_dir = work / f"{variant}-seed{seed}"
            start = time.time()
            run(
                [
                    "raygrpo",
                    "train",
                    "--config",
                    CONFIG,
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
                ev = evaluate(str(ckpt), work / f"{variant}-seed{seed}-{it}.json")
                curve.append({"iteration": it, "train_seconds": rows[it - 1]["elapsed_s"], **ev})
            after = curve[-1]
            result["runs"].append(
                {
                    "variant": variant,
                    "seed": seed,
                    "iterations": len(rows),
                    "wall_seconds": round(wall, 1),
                    "train_seconds": round(after["train_seconds"], 1),
                    "preference_before": base["preference"],
                    "preference_after": after["preference"],
                    "alignment_before": base["alignment"],
                    "alignment_after": after["alignment"],
                    "gap_closed": (after["preference"] - base["preference"]) / (1 - base["preference"]),
                    "alignment_change": after["alignment"] - base["alignment"],
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
        "config": CONFIG,
        "machine": machine(),
        "eval": "raygrpo eval --prompts tiny:heldout (45 prompts x 4 samples, ODE, seed 0)",
    }
    (RESULTS / "learning.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = markdown(result)
    (RESULTS / "learning.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def markdown(result: dict) -> list[str]:
    """One row per run: held-out preference / alignment / fidelity at the first checkpoint and at
    the end, and the monitor's hacking flags over the run."""
    lines = [
        "| variant | seed | first eval: iteration (train s) | preference | gap closed | alignment | "
        "fidelity | end: iteration (train s) | preference | gap closed | alignment | fidelity (kept) | "
        "hacking flags |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    base = result["base"]
    for r in result["runs"]:
        cells = []
        for c in (r["heldout_curve"][0], r["heldout_curve"][-1]):
            gap = (c["preference"] - r["preference_before"]) / (1 - r["preference_before"])
            cells.append(
                f"{c['iteration']} ({c['train_seconds']:.0f} s) | {c['preference']:.3f} | "
                f"{100 * gap:.0f} % | "
                f"{c['alignment']:.3f} ({c['alignment'] - r['alignment_before']:+.3f}) | {c['fidelity']:.3f}"
            )
        cells[-1] += f" ({100 * r['fidelity_kept']:.0f} %) | {r['hacking_flags']}"
        lines.append(f"| {r['variant']} | {r['seed']} | " + " | ".join(cells) + " |")
    lines.append(
        f"\nBase model (before): preference {base['preference']:.3f}, alignment {base['alignment']:.3f}, "
        f"fidelity {base['fidelity']:.3f}. train s counts from the run's start, actor start-up included. "
        "Hacking flags: the monitor's warnings during the run (held-out training reward up while "
        "fidelity fell > 10 % below its start)."
    )
    return lines


if __name__ == "__main__":
    main()
