"""Sample the tiny model into an image grid: one row per prompt, G samples sharing its noise.

    python -m rollout.tiny.sample --prompts rollout/tiny/heldout.txt --out grid.png
    python -m rollout.tiny.sample --prompts FILE --out grid.png --mode sde --noise-level 0.7

ODE mode draws a different initial noise per sample; SDE mode runs the all-SDE rollout plan
with the initial noise shared by each prompt's group and each member's own SDE noise.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from rollout.grid import save_grid
from rollout.plan import sde_plan
from rollout.policy import load_policy
from rollout.sampler import derive_seed, generate, group_seeds, sample_ode


def read_prompt_file(path: str) -> list[str]:
    """One prompt a line, blank lines and '#' comments skipped: the prompt-file format that
    orchestrator/prompts.py reads for training (rollout imports nothing of the orchestrator)."""
    lines = Path(path).read_text().splitlines()
    prompts = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not prompts:
        raise ValueError(f"prompt file {path} holds no prompts (one prompt a line expected)")
    return prompts


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompts", required=True, help="file with one prompt a line")
    p.add_argument("--out", required=True, help="PNG path of the grid")
    p.add_argument("--model", default="tiny", help="model directory, or 'tiny' for the shipped model")
    p.add_argument("--mode", choices=("ode", "sde"), default="ode")
    p.add_argument("--samples", type=int, default=4, help="samples per prompt (G)")
    p.add_argument("--max-prompts", type=int, default=16)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--shift", type=float, default=3.0)
    p.add_argument("--noise-level", type=float, default=0.7)
    p.add_argument("--sde-kind", choices=("dance", "flow"), default="flow")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    torch.set_num_threads(min(2, torch.get_num_threads()))
    policy = load_policy(args.model)
    prompts = read_prompt_file(args.prompts)[: args.max_prompts]
    g = args.samples
    batch = [q for q in prompts for _ in range(g)]
    if args.mode == "ode":
        seeds = [derive_seed(args.seed, i) for i in range(len(batch))]
        images = sample_ode(policy, batch, seeds, num_steps=args.steps, shift=args.shift)
    else:
        plan = sde_plan(
            args.steps,
            shift=args.shift,
            noise_level=args.noise_level,
            sde_kind=args.sde_kind,
            train_last=False,
        )  # images: x̂0 of the last model call
        initial, noise = [], []
        for gi in range(len(prompts)):
            a, b = group_seeds(args.seed, 0, gi, g)
            initial += a
            noise += b
        groups = [i // g for i in range(len(batch))]
        images, _ = generate(policy, batch, groups, plan, initial, noise, policy_version=0)
    path = save_grid(images, args.out, cols=g)
    print(f"wrote {len(batch)} samples ({len(prompts)} prompts x {g}) to {path}")


if __name__ == "__main__":
    main()
