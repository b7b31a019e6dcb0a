"""Held-out and train quality of the shipped tiny models (the starting points RL must improve).

    python bench/base_model.py [--out bench/results/base_model.json]
        [--hacked bench/fixtures/hacked_shapes.safetensors]

Machine and command are recorded in the JSON. Both worlds, ODE and SDE samples (4 per prompt):

shapes (`tiny`)      alignment, preference, fidelity; ground truth and two baselines scored by
                     the same rewards: `random_colour` renders each prompt's scene with random
                     colours (a model that ignores colour words), `random_prompt` a random other
                     prompt.
text (`tiny:text`)   ocr (PP-OCRv4, trained on), ocr_heldout (PP-OCRv6, the held-out judge),
                     fidelity; ground truth (the judges' ceilings) and `random_prompt` (a
                     render of another string). Train: the first 64 train prompts.
fidelity check       ground truth > base > the hacked shapes checkpoint (`--hacked`: the final
                     policy of today's 30-iteration default run, bench/fixtures/), on held-out
                     ODE samples.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.evaluate import eval_images, score_images  # noqa: E402
from reward.fidelity import FidelityScorer  # noqa: E402
from reward.ocr import PPOCRv4Scorer, PPOCRv6Scorer  # noqa: E402
from reward.rules import AlignmentScorer, PreferenceScorer  # noqa: E402
from rollout.grid import save_grid  # noqa: E402
from rollout.policy import load_policy  # noqa: E402
from rollout.tiny import text_world, world  # noqa: E402

SDE = {
    "noise_level": 0.7,
    "sde_kind": "flow",
}  # chunk_grpo's SDE on the tiny config (images: x̂0 of the last call)
HACKED = "bench/fixtures/hacked_shapes.safetensors"
TEXT_TRAIN_PROMPTS = 64


def shapes_baselines(prompts, scorers, rng):
    scenes = [world.parse_prompt(p) for p in prompts]
    colours = list(world.COLOURS)
    shuffled = []
    for s in scenes:
        c, b = rng.choice(colours, size=2, replace=False)
        shuffled.append(world.Scene(str(c), s.shape, s.position, str(b)))
    out = {}
    out.update(
        {
            f"{k}_random_colour": v
            for k, v in score_images(scorers, prompts, world.render(shuffled, rng)).items()
        }
    )
    others = [world.all_scenes()[i] for i in rng.integers(len(world.all_scenes()), size=len(prompts))]
    out.update(
        {
            f"{k}_random_prompt": v
            for k, v in score_images(scorers, prompts, world.render(others, rng)).items()
        }
    )
    return out


def text_baselines(prompts, scorers, rng):
    train, _ = text_world.split_strings()
    others = [text_world.prompt_of(train[i]) for i in rng.integers(len(train), size=len(prompts))]
    truth = text_world.render_prompts(others, rng)
    return {f"{k}_random_prompt": v for k, v in score_images(scorers, prompts, truth).items()}


def model_figures(policy, prompts, scorers, steps: int, grid: Path | None, samples: int = 4) -> dict:
    """{scorer}_{ode,sde}: mean over `samples` samples per prompt, ODE and SDE sampling."""
    res = {}
    for mode, sde in (("ode", None), ("sde", SDE)):
        batch, images = eval_images(
            policy, prompts, seed=1, num_steps=steps, sde=sde, samples_per_prompt=samples
        )
        res.update({f"{k}_{mode}": round(v, 4) for k, v in score_images(scorers, batch, images).items()})
        if grid is not None:
            save_grid(images[: 16 * 4], grid.with_name(f"{grid.stem}_{mode}.png"), cols=8)
    return res


def world_figures(name: str, steps: int, out: Path, rng, limit: int | None = None, samples: int = 4) -> dict:
    """Both splits of one world: the model, ground truth and the baselines."""
    if name == "shapes":
        policy, module, render, baselines = load_policy("tiny"), world, world.render_prompts, shapes_baselines
        scorers = {
            "alignment": AlignmentScorer(),
            "preference": PreferenceScorer(),
            "fidelity": FidelityScorer(),
        }
    else:
        policy, module, baselines = load_policy("tiny:text"), text_world, text_baselines
        render = lambda prompts, seed: text_world.render_prompts(prompts, np.random.default_rng(seed))  # noqa: E731
        scorers = {
            "ocr": PPOCRv4Scorer(threads=2),
            "ocr_heldout": PPOCRv6Scorer(threads=2),
            "fidelity": FidelityScorer(),
        }
    result = {}
    for split in ("train", "heldout"):
        prompts = module.prompts(split)
        prompts = prompts[:TEXT_TRAIN_PROMPTS] if name == "text" and split == "train" else prompts
        prompts = prompts[:limit] if limit else prompts
        stem = "base_model" if name == "shapes" else "base_model_text"
        grid = out.with_name(f"{stem}_{split}") if split == "heldout" else None
        res = model_figures(policy, prompts, scorers, steps, grid, samples)
        truth = render(prompts, int(rng.integers(2**31)))
        res.update(
            {f"{k}_ground_truth": round(v, 4) for k, v in score_images(scorers, prompts, truth).items()}
        )
        res.update({k: round(v, 4) for k, v in baselines(prompts, scorers, rng).items()})
        res["prompts"] = len(prompts)
        result[split] = res
    return result


def fidelity_check(hacked: Path, steps: int, out: Path, limit: int | None = None) -> dict:
    """Held-out shapes fidelity: ground truth, the base model, the hacked checkpoint (ODE, 4 per prompt)."""
    from safetensors.torch import load_file

    prompts = world.prompts("heldout")[:limit]
    fidelity = FidelityScorer()
    policy = load_policy("tiny")
    batch, base = eval_images(policy, prompts, seed=1, num_steps=steps)
    figures = {
        "ground_truth": float(fidelity.score(world.render_prompts(batch, seed=2)).mean()),
        "base": float(fidelity.score(base).mean()),
    }
    if hacked.exists():
        policy.load_trainable_state(load_file(str(hacked)))
        _, images = eval_images(policy, prompts, seed=1, num_steps=steps)
        figures["hacked"] = float(fidelity.score(images).mean())
        figures["hacked_preference"] = float(PreferenceScorer().score(images).mean())
        save_grid(images[: 16 * 4], out.with_name("base_model_hacked_heldout_ode.png"), cols=8)
    return {k: round(v, 4) for k, v in figures.items()}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="bench/results/base_model.json")
    p.add_argument("--hacked", default=HACKED, help="policy.safetensors of a reward-hacked shapes run")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 4 prompts a split, 1 sample each (numbers meaningless)",
    )
    args = p.parse_args()
    limit, samples = (4, 1) if args.quick else (None, 4)
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    start = time.time()
    out = Path(args.out)
    result = world_figures(
        "shapes", args.steps, out, rng, limit, samples
    )  # shapes keep the top-level train / heldout keys
    result["text"] = world_figures("text", args.steps, out, rng, limit, samples)
    result["fidelity_check"] = fidelity_check(Path(args.hacked), args.steps, out, limit)
    result["setup"] = {
        "models": {"shapes": "tiny", "text": "tiny:text"},
        "samples_per_prompt": samples,
        "num_steps": args.steps,
        "sde": SDE,
        "hacked": args.hacked,
        "command": "python bench/base_model.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch threads 2",
        "seconds": round(time.time() - start, 1),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    out.with_suffix(".md").write_text(table)
    print(table)


def markdown(result: dict) -> str:
    """Per world, split and reward: ODE and SDE samples against ground truth and the baselines."""
    lines = [
        "| world | split | reward | model ODE | model SDE | ground truth | random colour | random prompt |",
        "|---|---|---|---|---|---|---|---|",
    ]
    cell = lambda res, key: f"{res[key]:.3f}" if key in res else "–"  # noqa: E731
    for name, figures, rewards in (
        ("shapes", result, ("alignment", "preference", "fidelity")),
        ("text", result["text"], ("ocr", "ocr_heldout", "fidelity")),
    ):
        for split in ("train", "heldout"):
            for reward in rewards:
                cols = ("ode", "sde", "ground_truth", "random_colour", "random_prompt")
                lines.append(
                    f"| {name} | {split} | {reward} | "
                    + " | ".join(cell(figures[split], f"{reward}_{c}") for c in cols)
                    + " |"
                )
    f = result["fidelity_check"]
    lines.append(
        f"\nFidelity check (shapes, held-out, ODE): ground truth {f['ground_truth']:.3f} "
        f"> base {f['base']:.3f}"
        + (
            f" > hacked {f['hacked']:.3f} (its preference {f['hacked_preference']:.3f})"
            if "hacked" in f
            else ""
        )
        + ". text train = the first 64 train prompts; ocr_heldout and fidelity are never trained on "
        "by default."
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
