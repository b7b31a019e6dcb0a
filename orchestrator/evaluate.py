"""Held-out evaluation: mean reward per scorer over prompts, ODE sampling from seeded noise.

The same prompts, seeds and sampler are used by `raygrpo eval` (in-process) and by the
before/after summary of `raygrpo train` (on the rollout workers), so the numbers agree.
"""

from __future__ import annotations

import numpy as np

from rollout.plan import sde_plan
from rollout.models.base import Policy
from rollout.sampler import derive_seed, generate, group_seeds, sample_ode

EVAL_SAMPLES_PER_PROMPT = 4


def eval_batch(prompts: list[str], seed: int, samples_per_prompt: int) -> tuple[list[str], list[int]]:
    """(prompt per image, initial-noise seed per image): every image its own noise."""
    batch = [p for p in prompts for _ in range(samples_per_prompt)]
    return batch, [derive_seed(seed, 10**6, i) for i in range(len(batch))]


def score_images(scorers: dict, prompts: list[str], images: np.ndarray) -> dict[str, float]:
    """{scorer name: mean score} over the images."""
    return {name: float(np.mean(s.score(images, prompts))) for name, s in scorers.items()}


def eval_images(
    policy: Policy,
    prompts: list[str],
    *,
    seed: int = 0,
    samples_per_prompt: int = EVAL_SAMPLES_PER_PROMPT,
    num_steps: int = 12,
    shift: float = 3.0,
    sde: dict | None = None,
) -> tuple[list[str], np.ndarray]:
    """(prompt per image, uint8 images). ODE unless `sde` = {noise_level, sde_kind} is given
    (SDE: initial noise shared per prompt, each sample its own SDE noise)."""
    if sde is None:
        batch, seeds = eval_batch(prompts, seed, samples_per_prompt)
        return batch, sample_ode(policy, batch, seeds, num_steps=num_steps, shift=shift)
    batch = [p for p in prompts for _ in range(samples_per_prompt)]
    plan = sde_plan(num_steps, shift=shift, train_last=False, **sde)
    initial, noise = [], []
    for gi in range(len(prompts)):
        a, b = group_seeds(seed, 0, gi, samples_per_prompt)
        initial, noise = initial + a, noise + b
    groups = [i // samples_per_prompt for i in range(len(batch))]
    images, _ = generate(policy, batch, groups, plan, initial, noise, policy_version=0, micro_batch=64)
    return batch, images
