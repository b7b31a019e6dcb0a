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


def _member_noise(gens, shape, device) -> torch.Tensor:
    return torch.stack([torch.randn(shape, generator=g) for g in gens]).to(device)


@torch.no_grad()
def run_plan(policy: Policy, cond: Conditioning, x: torch.Tensor, plan: RolloutPlan, noise_seeds):
    """Denoise x [B, *latent] along `plan` (one path per member). Returns latents
    [B, N+1, *latent] float32 and log_probs [B, N] float32 (0 at ODE transitions)."""
    gens = [torch.Generator().manual_seed(int(s)) for s in noise_seeds]
    latents = [x.float()]
    log_probs = torch.zeros(x.shape[0], plan.num_transitions)
    for i in range(plan.num_transitions):
        sigma, sigma_next = plan.sigmas[i], plan.sigmas[i + 1]
        x = latents[-1]
        velocity = policy.velocity(x, sigma, cond)
        if plan.sde[i]:
            step = sde_step(x, velocity, sigma, sigma_next, noise_level=plan.noise_level,
                            kind=plan.sde_kind, noise=_member_noise(gens, x.shape[1:], x.device))
            latents.append(step.x_next)
            log_probs[:, i] = step.log_prob.cpu()
        else:
            latents.append(ode_step(x, velocity, sigma, sigma_next))
    return torch.stack(latents, dim=1).cpu(), log_probs


@torch.no_grad()
def run_branch_plan(policy: Policy, cond: Conditioning, x: torch.Tensor, plan: RolloutPlan, noise_seeds,
                    group_size: int):
    """E-GRPO: x [P, *latent] is one initial noise per prompt, cond [P]. Members are laid out
    per prompt as K columns of `group_size` (column c branches at plan.branches[c]).
    The anchor's velocity at x_b is the velocity every member of column b needs, so each
    branch's SDE step costs no extra transformer call. Returns latents [P·K·G, M+1, *latent]
    and log_probs [P·K·G, M]."""
    p, k, g, m = x.shape[0], len(plan.branches), group_size, plan.num_transitions
    prompt_of = torch.arange(p).repeat_interleave(k * g)  # [B] member -> prompt
    branch_of = torch.tensor(plan.branches).repeat_interleave(g).repeat(p)  # [B] member -> branch transition
    gens = [torch.Generator().manual_seed(int(s)) for s in noise_seeds]
    anchor = [x.float()]
    states = x.float()[prompt_of].clone()  # [B, ...] members sit on the anchor until they branch
    paths = [states.clone()]
    log_probs = torch.zeros(len(prompt_of), m)
    for t in range(m):
        sigma, sigma_next = plan.sigmas[t], plan.sigmas[t + 1]
        v_anchor = policy.velocity(anchor[-1], sigma, cond)  # [P, ...]
        anchor.append(ode_step(anchor[-1], v_anchor, sigma, sigma_next))
        off = branch_of < t  # already branched: their own ODE path
        if off.any():
            rows = torch.nonzero(off).flatten()
            v = policy.velocity(states[rows], sigma, cond.take(prompt_of[rows]))
            states[rows] = ode_step(states[rows], v, sigma, sigma_next)
        now = torch.nonzero(branch_of == t).flatten()
        if len(now):
            step = sde_step(anchor[-2][prompt_of[now]], v_anchor[prompt_of[now]], sigma, sigma_next,
                            noise_level=plan.noise_level, kind=plan.sde_kind,
                            noise=_member_noise([gens[i] for i in now.tolist()], x.shape[1:], x.device))
            states[now] = step.x_next
            log_probs[now, t] = step.log_prob.cpu()
        on = branch_of > t  # still on the anchor
        states[on] = anchor[-1][prompt_of[on]]
        paths.append(states.clone())
    return torch.stack(paths, dim=1).cpu(), log_probs


def generate(
    policy: Policy,
    prompts: list[str],
    group_ids: list[int],
    plan: RolloutPlan,
    initial_seeds: list[int],
    noise_seeds: list[int],
    policy_version: int,
    micro_batch: int | None = None,
    group_size: int = 1,
) -> tuple[np.ndarray, Trajectory]:
    """Roll out `plan` for a batch: uint8 images [B, H, W, 3] and the Trajectory. Members of
    a group are consecutive; for branch plans (E-GRPO) a group is K columns of `group_size`
    members, all sharing the group's initial seed, and `group_ids` label the columns."""
    if plan.branches:
        latents, log_probs = _branch_rollout(policy, prompts, plan, initial_seeds, noise_seeds, group_size, micro_batch)
    else:
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
    members = plan.members_per_group(group_size)
    train_steps = torch.stack([
        plan.select_train_steps(torch.Generator().manual_seed(derive_seed(s, 1)), i % members, group_size)
        for i, s in enumerate(noise_seeds)
    ])  # [B, S], -1 pads a shorter selection
    chunk_ids = torch.where(train_steps >= 0, torch.tensor(plan.chunk_ids)[train_steps.clamp(min=0)], -1)
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
        shared_inputs=bool(plan.branches),
    )
    return images, traj


def _branch_rollout(policy, prompts, plan, initial_seeds, noise_seeds, group_size, micro_batch):
    """Run whole prompt groups of a branch plan, a few prompts per call."""
    members = plan.members_per_group(group_size)
    starts = list(range(0, len(prompts), members))  # first member of each group
    per_call = max(1, (micro_batch or len(prompts)) // group_size)  # prompts per call
    parts = []
    for lo in range(0, len(starts), per_call):
        firsts = starts[lo:lo + per_call]
        cond = policy.encode([prompts[i] for i in firsts])
        x = noise_from_seeds([initial_seeds[i] for i in firsts], policy.latent_shape, policy.device)
        seeds = noise_seeds[firsts[0]:firsts[-1] + members]
        parts.append(run_branch_plan(policy, cond, x, plan, seeds, group_size))
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


@torch.no_grad()
def ode_latents(policy: Policy, prompts: list[str], initial_seeds, *, num_steps: int, shift: float = 3.0) -> torch.Tensor:
    """Every latent of deterministic ODE trajectories: [B, N+1, *latent] float32 (profiling)."""
    sigmas = sigma_schedule(num_steps, shift).tolist()
    cond = policy.encode(prompts)
    x = noise_from_seeds(initial_seeds, policy.latent_shape, policy.device)
    path = [x]
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        path.append(ode_step(path[-1], policy.velocity(path[-1], sigma, cond), sigma, sigma_next))
    return torch.stack(path, dim=1).cpu()


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
