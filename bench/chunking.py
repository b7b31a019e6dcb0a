"""Which chunking should the chunk_grpo preset default to? Measured on the embedded task.

    python bench/chunking.py [--iterations 12] [--eval-every 3] [--seeds 0 1 2] [--prompts 8] [--quick]

Every variant is the chunk_grpo preset on deploy/configs/tiny.yaml (12 steps: 11 trainable
transitions, int(K·0.5) chunks per trajectory, 2 shuffled optimizer steps per batch, ε 5e-5),
differing only in learner.chunks:
    adaptive        per-trajectory chunks from each trajectory's own L1_rel (the GCPO v3 paper's rule)
    fixed_scaled    GCPO's release list [2, 3, 4, 7] (16 transitions) scaled to 11: boundaries at
                    2/16, 5/16, 9/16 of 11 rounded -> [1, 2, 3, 5] (what the preset's mode scaled gives)
    dynamics        the min-SSE chunks of the base model's ODE L1_rel profile (the removed
                    `raygrpo profile` / mode dynamics, K = 4): [5, 3, 2, 1] on this model
The runs are in-process (orchestrator.local.LocalCluster: the same worker classes, no Ray), the
held-out evaluation is `raygrpo eval`'s (ODE, tiny:heldout, 4 samples per prompt) at every
checkpoint. Reward is not timing-sensitive, so any machine gives the same numbers for a seed.
Writes bench/results/chunking.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CONFIG, RESULTS, WORKLOAD, machine  # noqa: E402

VARIANTS = {
    "adaptive": ["learner.chunks.mode=adaptive"],
    "fixed_scaled": [
        "learner.chunks.mode=fixed",
        "learner.chunks.sizes=[1, 2, 3, 5]",
    ],  # = the preset's mode scaled
    "dynamics": ["learner.chunks.mode=fixed", "learner.chunks.sizes=[5, 3, 2, 1]"],
}


def heldout(cfg, checkpoint: Path | None) -> dict:
    from orchestrator.checkpoint import load_policy_weights
    from orchestrator.evaluate import eval_images, score_images
    from orchestrator.prompts import prompt_path, read_prompts
    from reward.worker import build_scorer
    from rollout.config import schedule_shift
    from rollout.policy import policy_from_config

    policy = policy_from_config(cfg.model)
    if checkpoint is not None:
        policy.load_trainable_state(load_policy_weights(checkpoint))
    batch, images = eval_images(
        policy,
        read_prompts(prompt_path("tiny:heldout")),
        seed=0,
        num_steps=cfg.rollout.num_steps,
        shift=schedule_shift(cfg.model, cfg.rollout),
    )
    return score_images({s.name: build_scorer(s) for s in cfg.reward.scorers}, batch, images)


def one(
    name: str, seed: int, iterations: int, eval_every: int, work: Path, quick: bool, prompts: int = 8
) -> dict:
    from orchestrator.config import load_config
    from orchestrator.local import LocalCluster
    from orchestrator.loop import train

    small = (
        ["rollout.num_workers=1", "orchestrator.prompts_per_iter=2", "rollout.group_size=4"] if quick else []
    )
    cfg = load_config(
        CONFIG,
        [
            *WORKLOAD,
            *VARIANTS[name],
            f"orchestrator.seed={seed}",
            f"orchestrator.iterations={iterations}",
            f"orchestrator.checkpoint_every={eval_every}",
            "orchestrator.eval_before_after=false",
            "orchestrator.dashboard=false",
            "rollout.num_workers=1",
            f"orchestrator.prompts_per_iter={prompts}",
            *small,
        ],
    )
    run_dir = work / f"{name}-seed{seed}"
    start = time.time()
    train(cfg, run_dir, cluster_cls=LocalCluster)
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    curve = []
    for ckpt in sorted((run_dir / "checkpoints").glob("iter_*")):
        it = int(ckpt.name.split("_")[1])
        curve.append(
            {"iteration": it, "train_reward": rows[it - 1]["reward/preference/mean"], **heldout(cfg, ckpt)}
        )
    return {
        "variant": name,
        "seed": seed,
        "seconds": round(time.time() - start, 1),
        "curve": curve,
        "images_per_iteration": cfg.batch_size,
        "config_chunks": cfg.learner.chunks.model_dump(),
        "clip_fraction": [r["learner/clip_fraction"] for r in rows],
    }


def summarise(runs: list[dict]) -> dict:
    out = {}
    for name in VARIANTS:
        mine = [r for r in runs if r["variant"] == name]
        if not mine:
            continue
        points = {}
        for c in mine[0]["curve"]:
            it = c["iteration"]
            vals = [next(x for x in r["curve"] if x["iteration"] == it) for r in mine]
            points[it] = {
                k: {"mean": statistics.mean(v[k] for v in vals), "std": statistics.pstdev(v[k] for v in vals)}
                for k in ("preference", "alignment")
            }
        area = [statistics.mean(x["preference"] for x in r["curve"]) for r in mine]
        out[name] = {
            "points": points,
            "preference_mean_over_evals": {"mean": statistics.mean(area), "std": statistics.pstdev(area)},
        }
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--iterations", type=int, default=12)
    p.add_argument("--eval-every", type=int, default=3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS))
    p.add_argument("--prompts", type=int, default=8, help="prompt groups (of 8) per iteration")
    p.add_argument("--quick", action="store_true", help="smoke test: 2 iterations of 2 groups of 4, one seed")
    p.add_argument("--out", default=str(RESULTS / "chunking.json"))
    p.add_argument("--render", action="store_true", help="only rewrite the markdown of the --out result")
    args = p.parse_args()
    if args.render:
        return rerender(Path(args.out))
    if args.quick:
        args.iterations, args.eval_every, args.seeds = 2, 1, args.seeds[:1]
    from orchestrator.config import load_config

    work = RESULTS / "tmp" / "chunking"
    work.mkdir(parents=True, exist_ok=True)
    base = heldout(load_config(CONFIG, WORKLOAD), None)
    runs = []
    for seed in args.seeds:
        for name in args.variants:
            runs.append(
                one(
                    name,
                    seed,
                    args.iterations,
                    args.eval_every,
                    work / ("quick" if args.quick else "full"),
                    args.quick,
                    args.prompts,
                )
            )
            print(name, seed, json.dumps(runs[-1]["curve"][-1]), flush=True)
    result = {
        "base": base,
        "summary": summarise(runs),
        "runs": runs,
        "setup": {
            "command": "python bench/chunking.py " + " ".join(sys.argv[1:]),
            "config": CONFIG,
            "variants": {k: VARIANTS[k] for k in args.variants},
            "machine": machine(),
        },
    }
    out = Path(args.out)
    out.write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(render(result))
    print(render(result))


def render(result: dict) -> str:
    """The markdown table of a result: held-out preference per variant and evaluation point
    (mean ± std over seeds), then each seed's last point, and the command and machine."""
    runs, base, setup = result["runs"], result["base"], result["setup"]
    seeds = sorted({r["seed"] for r in runs})
    its = sorted({c["iteration"] for r in runs for c in r["curve"]})
    per_it = runs[0]["images_per_iteration"]
    lines = [
        f"chunk_grpo on the shapes task, held-out preference (ODE) after k iterations of {per_it} images, "
        f"mean ± std over seeds {seeds} (base: preference {base['preference']:.3f}, "
        f"alignment {base['alignment']:.3f}).",
        "",
        "| chunks | " + " | ".join(f"it {i}" for i in its) + " | mean over evals | alignment, last |",
        "|---|" + "---|" * (len(its) + 2),
    ]
    for name, s in result["summary"].items():
        points = {int(k): v for k, v in s["points"].items()}  # int keys in memory, str in JSON
        cells = [f"{points[i]['preference']['mean']:.3f} ± {points[i]['preference']['std']:.3f}" for i in its]
        m = s["preference_mean_over_evals"]
        last = points[its[-1]]
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | {m['mean']:.3f} ± {m['std']:.3f} | "
            f"{last['alignment']['mean']:.3f} ± {last['alignment']['std']:.3f} |"
        )
    names = list(result["summary"])
    lines += [
        "",
        f"Held-out preference at iteration {its[-1]}, per seed:",
        "",
        "| seed | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for seed in seeds:
        last = {r["variant"]: r["curve"][-1]["preference"] for r in runs if r["seed"] == seed}
        lines.append(
            f"| {seed} | " + " | ".join(f"{last[n]:.3f}" if n in last else "–" for n in names) + " |"
        )
    lines += [
        "",
        f"`{setup['command']}` on {setup['machine']}; variants (overrides of `algorithm=chunk_grpo` on "
        f"{setup['config']}): "
        + "; ".join(f"{k} `{' '.join(v) or '(none)'}`" for k, v in setup["variants"].items())
        + (f". {setup['note']}" if setup.get("note") else "")
        + ".",
    ]
    return "\n".join(lines) + "\n"


def rerender(path: Path) -> None:
    """Rewrite the markdown of an existing result (no runs)."""
    path.with_suffix(".md").write_text(render(json.loads(path.read_text())))


if __name__ == "__main__":
    main()
