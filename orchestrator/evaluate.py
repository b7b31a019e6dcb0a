"""Held-out evaluation: mean reward per scorer over prompts, ODE sampling from seeded noise.

Used by `raygrpo eval`, the end-of-run summary and the benchmarks, so every reported
before/after number comes from the same procedure.
"""

from __future__ import annotations

import numpy as np

from rollout.plan import sde_plan
from rollout.policy import Policy
from rollout.sampler import derive_seed, generate, group_seeds, sample_ode

EVAL_SAMPLES_PER_PROMPT = 4


def eval_images(
    policy: Policy,
    prompts: list[str],
    *,
    seed: int = 0,
    samples_per_prompt: int = EVAL_SAMPLES_PER_PROMPT,
    num_steps: int = 15,
    shift: float = 3.0,
    sde: dict | None = None,
) -> tuple[list[str], np.ndarray]:
    """(prompt per image, uint8 images). ODE unless `sde` = {noise_level, sde_kind} is given."""
    batch = [p for p in prompts for _ in range(samples_per_prompt)]
    if sde is None:
        seeds = [derive_seed(seed, i) for i in range(len(batch))]
        return batch, sample_ode(policy, batch, seeds, num_steps=num_steps, shift=shift)
    plan = sde_plan(num_steps, shift=shift, train_last=True, **sde)
    initial, noise = [], []
    for gi in range(len(prompts)):
        a, b = group_seeds(seed, 0, gi, samples_per_prompt)
        initial, noise = initial + a, noise + b
    groups = [i // samples_per_prompt for i in range(len(batch))]
    images, _ = generate(policy, batch, groups, plan, initial, noise, policy_version=0, micro_batch=64)
    return batch, images


def score_images(scorers: dict, prompts: list[str], images: np.ndarray) -> dict[str, float]:
    """{scorer name: mean score} over the images."""
    return {name: float(np.mean(s.score(images, prompts))) for name, s in scorers.items()}
