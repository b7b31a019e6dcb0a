"""The five presets on one task, at equal image budget and at equal wall-clock, ≥ 3 seeds.

    python bench/algorithms.py [--config deploy/configs/tiny.yaml] [--images 1920] [--eval-every 384]
                               [--seeds 0 1 2] [--algorithms ...] [--quick]

Each run is `raygrpo train --config CONFIG algorithm=X` with no algorithm override (the config
must pin none: tiny.yaml does not), stopped after the same number of generated images
(E-GRPO makes K windows × G images per prompt, so it runs fewer iterations). A checkpoint every
~`--eval-every` images is evaluated with `raygrpo eval` (held-out prompts, ODE), and each curve
point records both the images generated and the training seconds spent (the iterations' own
phases, rollout to weight sync: no actor start-up, checkpoints or evaluations), so the same runs
give both readings: at the image budget (the last point), and at equal wall-clock, the point of
each run at the largest time every run reached (`wall_clock_budget_s` = the shortest run's
training time; or --seconds). Per-iteration training reward curves are kept as well. Timing needs a
quiet machine: the lead runs the full comparison; `--quick` is the smoke test (1 seed, 2
iterations of 2 small groups per preset). Writes bench/results/algorithms.{json,md,png}.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CONFIG, RESULTS, machine, run  # noqa: E402

ALGORITHMS = ["dance_grpo", "chunk_grpo", "e_grpo", "flow_grpo", "mix_grpo"]
# an iteration's training time: its phases from rollout to weight sync (metrics.jsonl time/<phase>),
# without actor start-up, checkpoints and evaluations (E-GRPO checkpoints more often per image)
TRAIN_PHASES = ("sample", "rollout", "score", "advantages", "update", "sync")
QUICK = ["orchestrator.prompts_per_iter=2", "rollout.group_size=4", "rollout.num_workers=1"]


def raygrpo(*args: str) -> str:
    return run([sys.executable, "-m", "orchestrator", *args])


def evaluate(checkpoint: str, out: Path, config: str, reuse: bool = False) -> dict:
    """`raygrpo eval` of a checkpoint (or 'base') on the config's held-out prompts: {scorer: mean}
    (with `reuse`, an evaluation already written to `out` is read instead)."""
    from orchestrator.config import load_config

    if reuse and out.exists():
        return json.loads(out.read_text())
    cfg = load_config(config)
    raygrpo(
        "eval",
        "--checkpoint",
        checkpoint,
        "--prompts",
        cfg.orchestrator.eval_prompts,
        "--config",
        config,
        "--json",
        str(out),
        *with_fidelity(cfg.reward.heldout),
    )
    return json.loads(out.read_text())


def with_fidelity(heldout) -> list[str]:
    """The override that adds the fidelity judge to the config's held-out judges (none if it has
    it): every comparison shows what a reward that rises may cost (issue 14's reward hacking)."""
    if any(s.kind == "fidelity" for s in heldout):
        return []
    judges = [s.model_dump(exclude_defaults=True) | {"name": s.name, "kind": s.kind} for s in heldout]
    return ["reward.heldout=" + json.dumps([*judges, {"name": "fidelity", "kind": "fidelity"}])]


def pinned_knobs(config: str) -> list[str]:
    """Fields some preset owns (orchestrator/config.py PRESETS) that the config file sets: a file
    that pins one would give every preset its value instead of the paper's."""
    from orchestrator.config import PRESETS, load_config

    sources = load_config(config).sources
    return sorted(
        {
            ".".join(p)
            for preset in PRESETS.values()
            for p in preset
            if sources[".".join(p)].startswith("file")
        }
    )


def images_per_iteration(config: str, algorithm: str, extra: list[str]) -> int:
    from orchestrator.config import build_plan, load_config

    cfg = load_config(config, [f"algorithm={algorithm}", *extra])
    return cfg.orchestrator.prompts_per_iter * build_plan(cfg).members_per_group(cfg.rollout.group_size)


def one(algorithm: str, seed: int, args, work: Path, extra: list[str]) -> dict:
    per_iter = images_per_iteration(args.config, algorithm, extra)
    iterations = max(1, round(args.images / per_iter))
    every = max(1, round(args.eval_every / per_iter))
    run_dir = work / f"{algorithm}-seed{seed}"
    done = run_dir / "bench_wall_s.json"  # written once the run finished: --reuse keeps it
    if args.reuse and done.exists():
        wall = json.loads(done.read_text())
    else:
        subprocess.run(["rm", "-rf", str(run_dir)], check=True)  # a run killed part-way starts over
        start = time.time()
        raygrpo(
            "train",
            "--config",
            args.config,
            "--run-dir",
            str(run_dir),
            f"algorithm={algorithm}",
            *extra,
            f"orchestrator.seed={seed}",
            f"orchestrator.iterations={iterations}",
            f"orchestrator.checkpoint_every={every}",
            "orchestrator.eval_before_after=false",
            "orchestrator.dashboard=false",
        )
        wall = time.time() - start
        done.write_text(json.dumps(wall))
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    reward_keys = [k for k in rows[0] if k.startswith("reward/") and k.endswith("/mean")]
    seconds = list(itertools.accumulate(sum(r.get(f"time/{p}", 0.0) for p in TRAIN_PHASES) for r in rows))
    curve = [{"images": 0, "train_seconds": 0.0, **args.base}]
    for ckpt in sorted((run_dir / "checkpoints").glob("iter_*")):
        it = int(ckpt.name.split("_")[1])
        ev = evaluate(str(ckpt), work / f"{algorithm}-seed{seed}-{it}.json", args.config, args.reuse)
        curve.append({"images": it * per_iter, "train_seconds": seconds[it - 1], **ev})
    train = [
        {
            "iteration": r["iteration"],
            "images": (r["iteration"] + 1) * per_iter,
            "seconds": t,
            "elapsed_s": r["elapsed_s"],
            **{k: r[k] for k in reward_keys},
            "clip_fraction": r["learner/clip_fraction"],
            "ratio_dev_later": r["learner/ratio_dev_later"],
        }
        for r, t in zip(rows, seconds)
    ]
    return {
        "algorithm": algorithm,
        "seed": seed,
        "iterations": iterations,
        "images_per_iteration": per_iter,
        "wall_seconds": round(wall, 1),
        "curve": curve,
        "train_curve": train,
        "final": curve[-1],
    }


def at_time(curve: list[dict], seconds: float) -> dict:
    """The last evaluation made within `seconds` of training."""
    return [c for c in curve if c["train_seconds"] <= seconds][-1]


def summarise(runs: list[dict], scorers: list[str], budget_s: float) -> dict:
    out = {}
    for name in sorted({r["algorithm"] for r in runs}, key=ALGORITHMS.index):
        mine = [r for r in runs if r["algorithm"] == name]
        stat = lambda xs: {"mean": statistics.mean(xs), "std": statistics.pstdev(xs)}  # noqa: E731
        out[name] = {
            "at_image_budget": {
                k: stat([r["final"][k] for r in mine]) for k in scorers + ["train_seconds", "images"]
            },
            "at_wall_clock": {
                k: stat([at_time(r["curve"], budget_s)[k] for r in mine]) for k in scorers + ["images"]
            },
        }
    return out


def command(argv: list[str]) -> str:
    """The command line as recorded with the results: --note's paragraph is written below the
    tables (and kept in setup.note), not repeated in the command."""
    kept = [a for i, a in enumerate(argv) if a != "--note" and (i == 0 or argv[i - 1] != "--note")]
    return "python bench/algorithms.py " + " ".join(kept) + (' --note "..."' if "--note" in argv else "")


def mean_std(values) -> str:
    values = list(values)
    return f"{statistics.mean(values):.3f} ± {statistics.pstdev(values):.3f}"


def curve_table(runs: list[dict], scorers: list[str]) -> list[str]:
    """Each preset's held-out curve: mean ± std over seeds at every evaluated image count (the
    same counts for every seed of a preset), one column per judge."""
    lines = [
        "Held-out curves by images generated, mean ± std over seeds (0 images = the base model):",
        "",
        "| algorithm | images | train s | " + " | ".join(scorers) + " |",
        "|---|---|---|" + "---|" * len(scorers),
    ]
    for name in sorted({r["algorithm"] for r in runs}, key=ALGORITHMS.index):
        for points in zip(*[r["curve"] for r in runs if r["algorithm"] == name]):
            seconds = statistics.mean(p["train_seconds"] for p in points)
            judges = " | ".join(mean_std(p[k] for p in points) for k in scorers)
            lines.append(f"| {name} | {points[0]['images']} | {seconds:.0f} | {judges} |")
    return lines


def plot(runs: list[dict], scorers: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(scorers), figsize=(5 * len(scorers), 7), squeeze=False)
    colours = dict(zip(ALGORITHMS, ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]))
    for r in runs:
        for j, key in enumerate(scorers):
            for i, x in enumerate(("images", "train_seconds")):
                axes[i][j].plot(
                    [c[x] for c in r["curve"]],
                    [c[key] for c in r["curve"]],
                    marker="o",
                    alpha=0.7,
                    color=colours[r["algorithm"]],
                    label=r["algorithm"] if r["seed"] == runs[0]["seed"] else None,
                )
                axes[i][j].set_xlabel("images generated" if x == "images" else "training seconds")
                axes[i][j].set_ylabel(f"held-out {key}")
                axes[i][j].grid(alpha=0.3)
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--config", default=CONFIG)
    p.add_argument(
        "--images", type=int, default=1920, help="images generated per run (the equal image budget)"
    )
    p.add_argument("--eval-every", type=int, default=384, help="images between held-out evaluations")
    p.add_argument(
        "--seconds",
        type=float,
        help="the equal wall-clock budget (default: the shortest run's training time)",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--algorithms", nargs="+", default=ALGORITHMS, choices=ALGORITHMS)
    p.add_argument(
        "--quick", action="store_true", help="smoke test: one seed, ~2 small iterations per preset"
    )
    p.add_argument(
        "--reuse",
        action="store_true",
        help="keep the finished runs and evaluations already in the "
        "work dir (same --images and --eval-every): resume a comparison that was stopped part-way",
    )
    p.add_argument("--out", default=str(RESULTS / "algorithms.json"))
    p.add_argument("--note", help="a paragraph to end the markdown with (the machine's state, caveats)")
    args = p.parse_args()
    extra = QUICK if args.quick else []
    pinned = pinned_knobs(args.config)
    if pinned:
        p.error(
            f"{args.config} pins {', '.join(pinned)}, which the presets set: every preset would run with the "
            "file's value. Remove them from the file (or compare with a copy that leaves them out)."
        )
    if args.quick:
        args.seeds = args.seeds[:1]
        args.images, args.eval_every = 16, 8
    work = RESULTS / "tmp" / (Path(args.out).stem + ("-quick" if args.quick else ""))
    work.mkdir(parents=True, exist_ok=True)
    args.base = evaluate("base", work / "base.json", args.config, args.reuse)
    scorers = [k for k in args.base if k != "seconds"]
    runs = []
    for seed in args.seeds:
        for name in args.algorithms:
            runs.append(one(name, seed, args, work, extra))
            print(name, seed, json.dumps(runs[-1]["final"]), flush=True)
    budget = args.seconds or min(r["final"]["train_seconds"] for r in runs)
    result = {
        "base": args.base,
        "wall_clock_budget_s": budget,
        "summary": summarise(runs, scorers, budget),
        "runs": runs,
        "setup": {
            "command": command(sys.argv[1:]),
            "note": args.note,
            "config": args.config,
            "images": args.images,
            "eval_every": args.eval_every,
            "seeds": args.seeds,
            "overrides": extra,
            "machine": machine(),
        },
    }
    out = Path(args.out)
    out.write_text(json.dumps(result, indent=2) + "\n")
    plot(runs, scorers, out.with_suffix(".png"))
    head = (
        " | ".join(f"{k} @ images" for k in scorers)
        + " | "
        + " | ".join(f"{k} @ {budget:.0f} s" for k in scorers)
    )
    lines = [
        f"Held-out rewards (ODE), mean ± std over seeds {args.seeds}: after {args.images} generated images, "
        f"and after {budget:.0f} s of training ({'--seconds' if args.seconds else 'the shortest run'}). "
        "Base: " + ", ".join(f"{k} {args.base[k]:.3f}" for k in scorers) + ".",
        "",
        f"| algorithm | {head} | train s @ images | images @ {budget:.0f} s |",
        "|---|" + "---|" * (2 * len(scorers) + 2),
    ]
    for name, s in result["summary"].items():
        cells = [
            f"{s['at_image_budget'][k]['mean']:.3f} ± {s['at_image_budget'][k]['std']:.3f}" for k in scorers
        ]
        cells += [
            f"{s['at_wall_clock'][k]['mean']:.3f} ± {s['at_wall_clock'][k]['std']:.3f}" for k in scorers
        ]
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | {s['at_image_budget']['train_seconds']['mean']:.0f} | "
            f"{s['at_wall_clock']['images']['mean']:.0f} |"
        )
    lines += ["", *curve_table(runs, scorers)]
    if args.note:
        lines += ["", args.note]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
