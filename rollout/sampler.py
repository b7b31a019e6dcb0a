"""The denoising loop: runs a RolloutPlan with `rollout.sde`, and the plain ODE sampler.

Noise is reproducible and keyed, never drawn from global RNG state:
    initial noise   seed = derive_seed(run_seed, iteration, group)          shared by a group
    SDE noise       seed = derive_seed(run_seed, iteration, group, member)  one per member
so a group re-run on another worker (fault recovery) reproduces the same samples, and
groups, workers and iterations all differ.
"""

from __future__ import annotations

import numpy as np
import torch

from rollout.plan import RolloutPlan
from rollout.policy import Conditioning, Policy
from rollout.sde import ode_step, sde_step, sigma_schedule
from rollout.trajectory import Trajectory


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integer parts (numpy SeedSequence hashing)."""
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & (2**63 - 1)


def group_seeds(run_seed: int, iteration: int, group: int, size: int) -> tuple[list[int], list[int]]:
    """(initial seeds, SDE noise seeds) of the `size` members of one group."""
    initial = derive_seed(run_seed, iteration, group)
    return [initial] * size, [derive_seed(run_seed, iteration, group, m + 1) for m in range(size)]


def noise_from_seeds(seeds, shape: tuple[int, ...], device="cpu") -> torch.Tensor:
    """[B, *shape] float32 standard normal noise, row b drawn from its own seed."""
    rows = [torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
    return torch.stack(rows).to(device)


@torch.no_grad()
def run_plan(policy: Policy, cond: Conditioning, x: torch.Tensor, plan: RolloutPlan, noise_seeds):
    """Denoise x [B, *latent] along `plan`. Returns latents [B, N+1, *latent] float32 and
    log_probs [B, N] float32 (0 at ODE transitions)."""
    gens = [torch.Generator().manual_seed(int(s)) for s in noise_seeds]
    latents = [x.float()]
    log_probs = torch.zeros(x.shape[0], plan.num_transitions)
    for i in range(plan.num_transitions):
        sigma, sigma_next = plan.sigmas[i], plan.sigmas[i + 1]
        x = latents[-1]
        velocity = policy.velocity(x, sigma, cond)
        if plan.sde[i]:
            noise = torch.stack([torch.randn(x.shape[1:], generator=g) for g in gens]).to(x.device)
            step = sde_step(x, velocity, sigma, sigma_next, noise_level=plan.noise_level,
                            kind=plan.sde_kind, noise=noise)
            latents.append(step.x_next)
            log_probs[:, i] = step.log_prob.cpu()
        else:
            latents.append(ode_step(x, velocity, sigma, sigma_next))
    return torch.stack(latents, dim=1).cpu(), log_probs


def generate(
    policy: Policy,
    prompts: list[str],
    group_ids: list[int],
    plan: RolloutPlan,
    initial_seeds: list[int],
    noise_seeds: list[int],
    policy_version: int,
    micro_batch: int | None = None,
) -> tuple[np.ndarray, Trajectory]:
    """Roll out `plan` for a batch: uint8 images [B, H, W, 3] and the Trajectory."""
    step = micro_batch or len(prompts)
    parts = []
    for lo in range(0, len(prompts), step):
        sl = slice(lo, lo + step)
        cond = policy.encode(prompts[sl])
        x = noise_from_seeds(initial_seeds[sl], policy.latent_shape, policy.device)
        parts.append(run_plan(policy, cond, x, plan, noise_seeds[sl]))
    latents = torch.cat([p[0] for p in parts])
    log_probs = torch.cat([p[1] for p in parts])
    # Training-step selection, from a stream of the member's own seed.
    train_steps = torch.stack(
        [plan.select_train_steps(torch.Generator().manual_seed(derive_seed(s, 1))) for s in noise_seeds]
    )  # [B, S]
    chunk_ids = torch.tensor(plan.chunk_ids)[train_steps]  # [B, S]
    images = policy.decode(latents[:, -1].to(policy.device))
    traj = Trajectory(
        prompts=list(prompts),
        group_ids=torch.tensor(group_ids, dtype=torch.long),
        latents=latents,
        log_probs=log_probs,
        sigmas=torch.tensor(plan.sigmas, dtype=torch.float32),
        train_steps=train_steps,
        chunk_ids=chunk_ids,
        initial_seeds=torch.tensor(initial_seeds, dtype=torch.long),
        noise_seeds=torch.tensor(noise_seeds, dtype=torch.long),
        policy_version=policy_version,
        noise_level=plan.noise_level,
        sde_kind=plan.sde_kind,
    )
    return images, traj


@torch.no_grad()
def sample_ode(policy: Policy, prompts: list[str], initial_seeds, *, num_steps: int, shift: float = 3.0,
               micro_batch: int = 64) -> np.ndarray:
    """Deterministic ODE samples from seeded initial noise: uint8 [B, H, W, 3]."""
    sigmas = sigma_schedule(num_steps, shift).tolist()
    images = []
    for lo in range(0, len(prompts), micro_batch):
        cond = policy.encode(prompts[lo : lo + micro_batch])
        x = noise_from_seeds(initial_seeds[lo : lo + micro_batch], policy.latent_shape, policy.device)
        for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
            x = ode_step(x, policy.velocity(x, sigma, cond), sigma, sigma_next)
        images.append(policy.decode(x))
    return np.concatenate(images)
