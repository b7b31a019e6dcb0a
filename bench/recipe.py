"""Which settings learn without hacking? Short runs of both worlds, judged by the held-out
judges that training never sees (the reward-hacking monitor's numbers).

    python bench/recipe.py --world text   [--iterations 30] [--seeds 0] [--variants default kl ...]
    python bench/recipe.py --world shapes [--iterations 30] [--seeds 0]
    python bench/recipe.py --world text --quick          # smoke: 2 iterations, 2 variants

Each run is `raygrpo train --config deploy/configs/tiny[_text].yaml` plus the variant's
overrides, with the monitor on (`orchestrator.heldout_every`): its held-out evaluations
(ODE, the world's held-out prompts) give the curves, `heldout_baseline.json` the base.

    text    target: ocr_heldout (PP-OCRv6) gap closed = (after − base) / (1 − base) ≥ 50 %
            within 600 s of training, fidelity ≥ 90 % of base
    shapes  target: held-out preference gap closed ≥ 80 %, fidelity ≥ 90 % of base

Writes bench/results/recipe_<world>.json and .md (one row per variant and seed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine, run  # noqa: E402

WORLDS = {  # config, target judge, its goal (gap closed), extra overrides
    "text": ("deploy/configs/tiny_text.yaml", "ocr_heldout", 0.5, []),
    "shapes": (
        "deploy/configs/tiny.yaml",
        "preference",
        0.8,
        ["reward.heldout=[{name: fidelity, kind: fidelity}]"],
    ),
}
# The levers of issue 14: KL to the base (β; Flow-GRPO's SD3 default is 0.04, config/grpo.py), SDE
# noise level, learning rate, LoRA vs full fine-tuning, reward mix.
VARIANTS = {
    "default": [],
    "kl0.04": ["learner.kl_coef=0.04"],
    "kl0.4": ["learner.kl_coef=0.4"],
    "noise0.4": ["rollout.noise_level=0.4"],
    "lr3e-5": ["learner.lr=3e-5"],
    "lora": ["algorithm=chunk_grpo", "model.finetune=lora", "learner.lr=3e-4"],
    "lora1e-4": ["algorithm=chunk_grpo", "model.finetune=lora", "learner.lr=1e-4"],
    "lora1e-3": ["algorithm=chunk_grpo", "model.finetune=lora", "learner.lr=1e-3"],
    # the algorithm is the recipe's choice, not a pinned knob: MixGRPO trains only its SDE window
    # (the first steps, where layout and glyph identity are decided; texture comes from late steps)
    "mix": ["algorithm=mix_grpo"],
    "mix_lora": ["algorithm=mix_grpo", "model.finetune=lora", "learner.lr=3e-4"],
    "mix_lora1.5e-4": ["algorithm=mix_grpo", "model.finetune=lora", "learner.lr=1.5e-4"],
    "mix_lora1e-4": ["algorithm=mix_grpo", "model.finetune=lora", "learner.lr=1e-4"],
    "dance_lora": ["algorithm=dance_grpo", "model.finetune=lora", "learner.lr=3e-4"],
    "e_lora": ["algorithm=e_grpo", "model.finetune=lora", "learner.lr=3e-4"],
    "e_lora1e-4": ["algorithm=e_grpo", "model.finetune=lora", "learner.lr=1e-4"],
    "e_lora1e-3": ["algorithm=e_grpo", "model.finetune=lora", "learner.lr=1e-3"],
    "flow_lora": ["algorithm=flow_grpo", "model.finetune=lora", "learner.lr=3e-4"],
    # e_grpo held fidelity best per image in bench/results/algorithms_text.md; KL to the base on top
    "e_lora_kl0.04": ["algorithm=e_grpo", "model.finetune=lora", "learner.lr=3e-4", "learner.kl_coef=0.04"],
    "e_lora1e-3_kl0.04": [
        "algorithm=e_grpo",
        "model.finetune=lora",
        "learner.lr=1e-3",
        "learner.kl_coef=0.04",
    ],
    # twice the prompts per update: the same images in half the optimizer steps, less noisy columns
    "e_lora_kl0.04_p16": [
        "algorithm=e_grpo",
        "model.finetune=lora",
        "learner.lr=3e-4",
        "learner.kl_coef=0.04",
        "orchestrator.prompts_per_iter=16",
    ],
    # tiny_text.yaml with both OCR scorers on 2 ONNX threads (ocr_speed.md: half the time per image);
    # the scoring phase runs alone between rollouts, so the second core is otherwise idle then
    "ocr_threads2": [
        "reward.scorers=[{name: ocr, kind: ocr, weight: 1.0, batch_size: 4, threads: 2}]",
        "reward.heldout=[{name: ocr_heldout, kind: ocr_heldout, batch_size: 1, threads: 2}, "
        "{name: fidelity, kind: fidelity}]",
    ],
}
# the same on 2 ONNX threads, with LoRA on every linear layer of the blocks (the text world's glyph
# shapes live in the MLPs as much as in attention; the tiny model is 96 wide, so rank 32 is a third
# of full rank), and with groups of 16 members over half the prompts (finer ranking per column)
VARIANTS["e_lora_all"] = VARIANTS["ocr_threads2"] + [
    "model.lora.targets=[attn.to_q, attn.to_k, attn.to_v, attn.to_out.0, attn.add_q_proj, "
    "attn.add_k_proj, attn.add_v_proj, attn.to_add_out, ff.net.0.proj, ff.net.2, "
    "ff_context.net.0.proj, ff_context.net.2, proj_mlp, proj_out, context_embedder]"
]
VARIANTS["e_group16"] = VARIANTS["ocr_threads2"] + [
    "rollout.group_size=16",
    "orchestrator.prompts_per_iter=4",
]
# more noise at the branch step (E-GRPO's a = 0.7): the ODE tail after it is deterministic, so
# members of a column differ more in what the early, high-entropy steps decide (glyph identity)
VARIANTS["e_noise1.0"] = VARIANTS["ocr_threads2"] + ["rollout.noise_level=1.0"]
# train on PP-OCRv4's log-probability of the target (ocr_likelihood: dense where the edit-distance
# formula is a step function of the argmax read); the held-out judge stays PP-OCRv6's read
VARIANTS["e_ocr_ll"] = [
    "reward.scorers=[{name: ocr_likelihood, kind: ocr_likelihood, weight: 1.0, batch_size: 4, threads: 2}]",
    VARIANTS["ocr_threads2"][1],
]
VARIANTS["e_ocr_ll_all"] = VARIANTS["e_ocr_ll"] + VARIANTS["e_lora_all"][2:]
# the update is ~5 % of an iteration (0.7 of ~14 s): reuse each batch for more optimizer steps
# (PPO inner epochs; the clipped ratio bounds the later passes), or halve the batch for twice
# the iterations (16 prompts per update learned no faster per second than 8: e_lora_kl0.04_p16)
VARIANTS["e_ll_ep4"] = VARIANTS["e_ocr_ll"] + ["learner.epochs=4"]
VARIANTS["e_ll_p4"] = VARIANTS["e_ocr_ll"] + ["orchestrator.prompts_per_iter=4"]
# β 0.04 leaves learner/kl ~2e-4 (recipe_text.md): a KL 25× stronger against the fidelity epochs 4 spent
VARIANTS["e_ll_ep4_kl1"] = VARIANTS["e_ll_ep4"] + ["learner.kl_coef=1.0"]
# every E-GRPO column's update is ~99.9 % noise (bench/results/column_snr.md): AdamW's first moment
# at β1 0.99 averages ~100 column steps (~17 iterations) instead of ~10, so a step follows the slope
# the columns share and walks the background less; lr ×3 spends the saved drift on that slope
VARIANTS["e_ll_b99"] = VARIANTS["e_ocr_ll"] + ["learner.betas=[0.99, 0.999]", "learner.lr=1e-3"]
# is the gap between the trained and the judging OCR model the missing lever? Train on the held-out
# judge itself (PP-OCRv6's read, Flow-GRPO's formula); PP-OCRv6 is then no longer held out
VARIANTS["e_oracle_v6"] = [
    "reward.scorers=[{name: ocr_v6, kind: ocr_heldout, weight: 1.0, batch_size: 4, threads: 2}]",
    VARIANTS["ocr_threads2"][1],
]
REWARD_MIX = {  # shapes only: half the weight on the gameable preference
    "shapes": {
        "pref0.5": [
            "reward.scorers=[{name: preference, kind: preference, weight: 0.5}, "
            "{name: alignment, kind: alignment, weight: 1.0}]"
        ]
    },
}
FIDELITY_KEPT = 0.9
BUDGET_S = {"text": 600, "shapes": None}  # issue 14: text within 10 min of training; shapes has no time
# target (README command 1's "a few minutes" is judged on a quiet machine: s per iteration in the .json)


def summarise(run_dir: Path, judge: str, goal: float, budget: float | None) -> dict:
    """Base, curve and end of the monitor's held-out evaluations; pass/fail against the targets."""
    base = json.loads((run_dir / "heldout_baseline.json").read_text())
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    curve = [
        {
            "iteration": r["iteration"],
            "elapsed_s": round(r["elapsed_s"], 1),
            **{
                k.removeprefix("heldout/").removesuffix("/mean"): round(v, 4)
                for k, v in r.items()
                if k.startswith("heldout/")
            },
        }
        for r in rows
        if "heldout/hacking" in r
    ]
    end = curve[-1]
    gap = (end[judge] - base[judge]) / max(1 - base[judge], 1e-9)
    kept = end["fidelity"] / base["fidelity"]
    in_budget = [c for c in curve if budget is None or c["elapsed_s"] <= budget]
    best = max(((c[judge] - base[judge]) / max(1 - base[judge], 1e-9) for c in in_budget), default=None)
    return {
        "base": base,
        "end": end,
        "gap_closed": round(gap, 4),
        "fidelity_kept": round(kept, 4),
        "gap_closed_within_budget": None if best is None else round(best, 4),
        "hacking_flags": sum(c["hacking"] for c in curve),
        "meets_target": bool(
            gap >= goal and kept >= FIDELITY_KEPT and (budget is None or end["elapsed_s"] <= budget)
        ),
        "curve": curve,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--world", choices=tuple(WORLDS), default="text")
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--heldout-every", type=int, default=5)
    p.add_argument(
        "--eval-samples", type=int, default=2, help="held-out ODE samples per prompt in each evaluation"
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--variants", nargs="+", help="names from VARIANTS / REWARD_MIX (default: all)")
    p.add_argument("--quick", action="store_true", help="smoke test: 2 iterations, default and kl0.04")
    p.add_argument("--out", help="result stem (default bench/results/recipe_<world>)")
    p.add_argument(
        "--no-ray",
        action="store_true",
        help="`raygrpo train --no-ray`: the same loop in one process "
        "(for exploring on an overloaded machine, where Ray's 30 s start-up deadline fails)",
    )
    p.add_argument(
        "--append", action="store_true", help="keep the rows already in --out (replacing same variant+seed)"
    )
    args = p.parse_args()
    config, judge, goal, extra = WORLDS[args.world]
    variants = {**VARIANTS, **REWARD_MIX.get(args.world, {})}
    names = ["default", "kl0.04"] if args.quick else (args.variants or list(variants))
    iterations, every = (2, 1) if args.quick else (args.iterations, args.heldout_every)
    out = Path(args.out) if args.out else RESULTS / f"recipe_{args.world}"
    # run directories per result stem: `raygrpo train --run-dir` refuses one that holds a run
    work = RESULTS / "tmp" / (out.name if args.out else f"recipe_{args.world}")
    result = {"runs": []}
    if args.append and out.with_suffix(".json").exists():
        previous = json.loads(out.with_suffix(".json").read_text())
        result = {"runs": previous["runs"], "note": previous.get("setup", {}).get("note")}
    for name in names:
        for seed in args.seeds:
            run_dir = work / f"{name}-seed{seed}"
            start = time.time()
            run(
                [
                    "raygrpo",
                    "train",
                    *(["--no-ray"] if args.no_ray else []),
                    "--config",
                    config,
                    "--run-dir",
                    str(run_dir),
                    *extra,
                    *variants[name],
                    f"orchestrator.seed={seed}",
                    f"orchestrator.iterations={iterations}",
                    # before/after kept: the grids, and "before" is the baseline
                    f"orchestrator.heldout_every={every}",
                    f"orchestrator.eval_samples_per_prompt={args.eval_samples}",
                    "orchestrator.dashboard=false",
                    f"orchestrator.checkpoint_every={iterations}",
                ]
            )
            row = {
                "variant": name,
                "overrides": variants[name],
                "seed": seed,
                "iterations": iterations,
                "ray": not args.no_ray,
                "command": "python bench/recipe.py " + " ".join(sys.argv[1:]),
                "machine": machine(),
                "wall_s": round(time.time() - start, 1),
                **summarise(run_dir, judge, goal, BUDGET_S[args.world]),
            }
            result["runs"] = [r for r in result["runs"] if (r["variant"], r["seed"]) != (name, seed)] + [row]
            print(json.dumps({k: v for k, v in row.items() if k not in ("curve", "base")}), flush=True)
    result["setup"] = {
        "command": "python bench/recipe.py " + " ".join(sys.argv[1:]),
        "config": config,
        "judge": judge,
        "goal_gap_closed": goal,
        "fidelity_kept": FIDELITY_KEPT,
        "budget_s": BUDGET_S[args.world],
        "iterations": iterations,
        "heldout_every": every,
        "eval_samples_per_prompt": args.eval_samples,
        "machine": machine(),
        "note": result.pop("note", None),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result) + "\n")
    print(markdown(result))


def markdown(result: dict) -> str:
    s = result["setup"]
    j = s["judge"]
    budget = "best" if s["budget_s"] is None else f"≤ {s['budget_s']} s"
    lines = [
        f"| variant | seed | {j} base → end | gap closed ({budget}) | fidelity base → end (kept) | "
        "hacking flags | end: iteration, s | target met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        b, e = r["base"], r["end"]
        within = (
            "–" if r["gap_closed_within_budget"] is None else f"{100 * r['gap_closed_within_budget']:.0f} %"
        )
        lines.append(
            f"| {r['variant']} | {r['seed']} | {b[j]:.3f} → {e[j]:.3f} | "
            f"{100 * r['gap_closed']:.0f} % ({within}) | "
            f"{b['fidelity']:.3f} → {e['fidelity']:.3f} ({100 * r['fidelity_kept']:.0f} %) | "
            f"{r['hacking_flags']} | {e['iteration']}, {e['elapsed_s']:.0f} | "
            f"{'yes' if r['meets_target'] else 'no'} |"
        )
    commands = sorted({r["command"] for r in result["runs"] if "command" in r})
    lines.append(
        "\nCommands (one per row group; each row's own command and machine are in the .json): "
        + "; ".join(f"`{c}`" for c in commands)
        + f". Machine: {s['machine']}."
    )
    if s.get("note"):
        lines.append(f"\n{s['note']}")
    lines.append(
        f"\nTarget: {j} gap closed ≥ {100 * s['goal_gap_closed']:.0f} % with fidelity ≥ "
        f"{100 * s['fidelity_kept']:.0f} % of base at the run's end"
        + ("" if s["budget_s"] is None else f", by {s['budget_s']} s of training")
        + " (elapsed_s counts from the run's start, actor start-up included). Overrides per variant: "
        "bench/recipe.py VARIANTS."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
