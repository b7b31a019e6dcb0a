"""DanceGRPO vs Chunk-GRPO vs E-GRPO on the embedded task, at the same image budget.

    python bench/algorithms.py [--images 1920] [--eval-every 384] [--seeds 0 1 2]

Every preset runs `raygrpo train` on deploy/configs/tiny.yaml with the same SDE (flow,
a = 0.7, last step ODE), rewards (preference + alignment, advantage aggregation) and
learning rate; only the algorithm differs. DanceGRPO / Chunk-GRPO make 64 images an
iteration (8 prompts × 8); E-GRPO 96 (4 prompts × 6 branch columns × 4). Each run stops
at the same number of generated images and is evaluated (`raygrpo eval`, held-out
prompts, ODE) every `--eval-every` images (the same image counts for every preset).
Writes bench/results/algorithms.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CONFIG, RESULTS, evaluate, machine, run  # noqa: E402

NOT_FIXED = ["learner.chunks.mode=null", "learner.chunks.sizes=null"]
PRESETS = {  # name: (overrides, images per iteration)
    "dance_grpo": (["algorithm=dance_grpo", *NOT_FIXED], 64),
    "chunk_grpo": (["algorithm=chunk_grpo"], 64),
    "e_grpo": (["algorithm=e_grpo", *NOT_FIXED, "orchestrator.prompts_per_iter=4", "rollout.group_size=4"], 96),
}


def one(name: str, seed: int, images: int, eval_every: int, work: Path, base: dict) -> dict:
    overrides, per_iter = PRESETS[name]
    iterations = images // per_iter
    run_dir = work / f"{name}-seed{seed}"
    start = time.time()
    run(["raygrpo", "train", "--config", CONFIG, "--run-dir", str(run_dir), *overrides, f"orchestrator.seed={seed}",
         f"orchestrator.iterations={iterations}", f"orchestrator.checkpoint_every={max(1, eval_every // per_iter)}",
         "orchestrator.eval_before_after=false"])
    wall = time.time() - start
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    curve = [{"images": 0, "train_seconds": 0.0, **base}]
    for ckpt in sorted((run_dir / "checkpoints").glob("iter_*")):
        it = int(ckpt.name.split("_")[1])
        ev = evaluate(str(ckpt), work / f"{name}-seed{seed}-{it}.json")
        curve.append({"images": it * per_iter, "train_seconds": rows[it - 1]["elapsed_s"], **ev})
    return {"algorithm": name, "seed": seed, "iterations": iterations, "images_per_iteration": per_iter,
            "wall_seconds": round(wall, 1), "curve": curve, "final": curve[-1]}


def summarise(runs: list[dict]) -> dict:
    out = {}
    for name in PRESETS:
        finals = [r["final"] for r in runs if r["algorithm"] == name]
        firsts = [r["curve"][1] for r in runs if r["algorithm"] == name]  # the first evaluation after training began
        out[name] = {k: {"mean": statistics.mean(f[k] for f in finals), "std": statistics.pstdev(f[k] for f in finals)}
                     for k in ("preference", "alignment", "train_seconds")}
        out[name]["early"] = {k: {"mean": statistics.mean(f[k] for f in firsts), "std": statistics.pstdev(f[k] for f in firsts)}
                              for k in ("images", "preference", "alignment")}
    return out


def plot(runs: list[dict], base: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    colours = {"dance_grpo": "tab:blue", "chunk_grpo": "tab:orange", "e_grpo": "tab:green"}
    for r in runs:
        xs = [c["images"] for c in r["curve"]]
        for ax, key in zip(axes, ("preference", "alignment")):
            ax.plot(xs, [c[key] for c in r["curve"]], marker="o", color=colours[r["algorithm"]], alpha=0.7,
                    label=r["algorithm"] if r["seed"] == runs[0]["seed"] else None)
    for ax, key in zip(axes, ("preference", "alignment")):
        ax.set_xlabel("images generated")
        ax.set_ylabel(f"held-out {key} (ODE)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=1920)
    p.add_argument("--eval-every", type=int, default=384, help="images between evaluations (a multiple of 64 and 96)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = p.parse_args()
    work = RESULTS / "tmp" / "algorithms"
    work.mkdir(parents=True, exist_ok=True)
    base = evaluate("base", work / "base.json")
    runs = []
    for seed in args.seeds:
        for name in PRESETS:
            runs.append(one(name, seed, args.images, args.eval_every, work, base))
            print(name, seed, json.dumps(runs[-1]["final"]), flush=True)
    result = {"base": base, "summary": summarise(runs), "runs": runs,
              "setup": {"command": "python bench/algorithms.py " + " ".join(sys.argv[1:]), "config": CONFIG,
                        "images": args.images, "presets": {k: v[0] for k, v in PRESETS.items()}, "machine": machine()}}
    (RESULTS / "algorithms.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(runs, base, RESULTS / "algorithms.png")
    lines = [f"Held-out, after {args.images} generated images, mean ± std over seeds {args.seeds} "
             f"(base: preference {base['preference']:.3f}, alignment {base['alignment']:.3f}).", "",
             f"| algorithm | preference at {args.eval_every} images | preference | alignment | train s |",
             "|---|---|---|---|---|"]
    for name, s in result["summary"].items():
        lines.append(f"| {name} | {s['early']['preference']['mean']:.3f} ± {s['early']['preference']['std']:.3f} | "
                     f"{s['preference']['mean']:.3f} ± {s['preference']['std']:.3f} | "
                     f"{s['alignment']['mean']:.3f} ± {s['alignment']['std']:.3f} | "
                     f"{s['train_seconds']['mean']:.0f} ± {s['train_seconds']['std']:.0f} |")
    (RESULTS / "algorithms.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
