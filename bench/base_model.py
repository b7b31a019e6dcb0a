"""Held-out and train quality of the shipped tiny model (the starting point RL must improve).

    python bench/base_model.py [--model tiny] [--out bench/results/base_model.json]

Machine and command are recorded in the JSON. Baselines, scored by the same rewards:
`random_colour` renders each prompt's scene with random object/background colours (a
model that ignores colour words); `random_prompt` renders a random other prompt.
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
from reward.rules import AlignmentScorer, PreferenceScorer  # noqa: E402
from rollout.grid import save_grid  # noqa: E402
from rollout.policy import load_policy  # noqa: E402
from rollout.tiny import world  # noqa: E402

SDE = {"noise_level": 0.7, "sde_kind": "flow"}  # chunk_grpo's SDE on the tiny config (images: x̂0 of the last call)


def baselines(prompts, scorers, rng):
    scenes = [world.parse_prompt(p) for p in prompts]
    colours = list(world.COLOURS)
    shuffled = []
    for s in scenes:
        c, b = rng.choice(colours, size=2, replace=False)
        shuffled.append(world.Scene(str(c), s.shape, s.position, str(b)))
    out = {}
    out.update({f"{k}_random_colour": v for k, v in score_images(scorers, prompts, world.render(shuffled, rng)).items()})
    others = [world.all_scenes()[i] for i in rng.integers(len(world.all_scenes()), size=len(prompts))]
    out.update({f"{k}_random_prompt": v for k, v in score_images(scorers, prompts, world.render(others, rng)).items()})
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="tiny")
    p.add_argument("--out", default="bench/results/base_model.json")
    p.add_argument("--steps", type=int, default=12)
    args = p.parse_args()
    torch.set_num_threads(2)
    policy = load_policy(args.model)
    scorers = {"alignment": AlignmentScorer(), "preference": PreferenceScorer()}
    rng = np.random.default_rng(0)
    result = {}
    start = time.time()
    for split in ("train", "heldout"):
        prompts = world.read_prompts(world.prompt_file(split))
        res = {}
        for mode, sde in (("ode", None), ("sde", SDE)):
            batch, images = eval_images(policy, prompts, seed=1, num_steps=args.steps, sde=sde)
            res.update({f"{k}_{mode}": round(v, 4) for k, v in score_images(scorers, batch, images).items()})
            if split == "heldout":
                grid = Path(args.out).with_name(f"base_model_{split}_{mode}.png")
                save_grid(images[: 16 * 4], grid, cols=8)
        truth = world.render([world.parse_prompt(q) for q in prompts], rng)
        res.update({f"{k}_ground_truth": round(v, 4) for k, v in score_images(scorers, prompts, truth).items()})
        res.update({k: round(v, 4) for k, v in baselines(prompts, scorers, rng).items()})
        res["prompts"] = len(prompts)
        result[split] = res
    result["setup"] = {
        "model": args.model,
        "samples_per_prompt": 4,
        "num_steps": args.steps,
        "sde": SDE,
        "command": "python bench/base_model.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch threads 2",
        "seconds": round(time.time() - start, 1),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    Path(args.out).with_suffix(".md").write_text(table)
    print(table)


def markdown(result: dict) -> str:
    """alignment / preference per split: ODE and SDE samples against ground truth and the baselines."""
    cols = ("ode", "sde", "ground_truth", "random_colour", "random_prompt")
    lines = ["| split | reward | model ODE | model SDE | ground truth | random colour | random prompt |",
             "|---|---|---|---|---|---|---|"]
    for split in ("train", "heldout"):
        for reward in ("alignment", "preference"):
            lines.append(f"| {split} | {reward} | " + " | ".join(f"{result[split][f'{reward}_{c}']:.3f}" for c in cols) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
