"""The denoising loop: runs a RolloutPlan with `rollout.sde`, and the plain ODE sampler.

Noise is reproducible and keyed, never drawn from global RNG state:
    initial noise   seed = derive_seed(run_seed, iteration, group)          shared by a group
    SDE noise       seed = derive_seed(run_seed, iteration, group, member)  one per member
so a group re-run on another worker (fault recovery) reproduces the same samples, and
groups, workers and iterations all differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rollout.plan import RolloutPlan
from rollout.models.base import Conditioning, Policy
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


def _velocity(
    policy: Policy, x: torch.Tensor, sigma, cond: Conditioning, micro_batch: int | None
) -> torch.Tensor:
    """policy.velocity in calls of at most `micro_batch` samples."""
    step = micro_batch or len(x)
    if len(x) <= step:
        return policy.velocity(x, sigma, cond)
    return torch.cat(
        [
            policy.velocity(x[lo : lo + step], sigma, cond.select(list(range(lo, min(lo + step, len(x))))))
            for lo in range(0, len(x), step)
        ]
    )


@torch.no_grad()
def run_plan(policy: Policy, cond: Conditioning, x: torch.Tensor, plan: RolloutPlan, noise_seeds):
    """Denoise x [B, *latent] along a path plan (one path per member). Returns latents
    [B, N+1, *latent] float32 (x_N included, the last SDE step's noise with it), log_probs
    [B, N] float32 (0 at ODE transitions) and x0 [B, *latent]: x̂0 of the last model call
    (σ_{N−1}), the image every reference decodes (ALGORITHMS.md §1.1, §3)."""
    gens = [torch.Generator().manual_seed(int(s)) for s in noise_seeds]
    latents = [x.float()]
    log_probs = torch.zeros(x.shape[0], plan.num_transitions)
    for i in range(plan.num_transitions):
        sigma, sigma_next = plan.sigmas[i], plan.sigmas[i + 1]
        x = latents[-1]
        velocity = policy.velocity(x, sigma, cond)
        if plan.sde[i]:
            step = sde_step(
                x,
                velocity,
                sigma,
                sigma_next,
                noise_level=plan.noise_level,
                kind=plan.sde_kind,
                noise=_member_noise(gens, x.shape[1:], x.device),
                guard_sigma=plan.guard_sigma,
            )
            latents.append(step.x_next)
            log_probs[:, i] = step.log_prob.cpu()
        else:
            latents.append(ode_step(x, velocity, sigma, sigma_next))
    x0 = x - plan.sigmas[-2] * velocity.float()  # x̂0 at σ_{N−1}
    return torch.stack(latents, dim=1).cpu(), log_probs, x0


@torch.no_grad()
def run_windows(
    policy: Policy,
    cond: Conditioning,
    x: torch.Tensor,
    plan: RolloutPlan,
    noise_seeds,
    group_size: int,
    micro_batch: int | None = None,
):
    """E-GRPO (ALGORITHMS.md §2.3): x [P, *latent] is one initial noise per prompt, cond [P].
    Members are laid out per prompt as K columns of `group_size`; column c takes plan.windows[c]
    = (k, e): one SDE step σ_k → σ_e from the anchor's x_k (with the anchor's velocity there:
    no extra call), then the ODE on the base grid σ_e → … → σ_N. One loop over the grid, so
    all members at σ_t share one transformer call. The anchor runs only as far as the last
    active start. Returns latents [P·K·G, N+1, *latent] (the anchor up to x_k, x_e at every
    index k+1..e, then the continuation), log_probs [P·K·G, N] (the window's at index k) and
    x0 [P·K·G, *latent] (x̂0 of each member's last model call, at σ_{N−1}). Calls hold at
    most `micro_batch` samples."""
    p, g, n = x.shape[0], group_size, plan.num_transitions
    sigmas = torch.tensor(plan.sigmas)
    starts = torch.tensor([s for s, _ in plan.windows]).repeat_interleave(g).repeat(p)  # [B] member -> k
    ends = torch.tensor([e for _, e in plan.windows]).repeat_interleave(g).repeat(p)  # [B] member -> e
    prompt_of = torch.arange(p).repeat_interleave(len(plan.windows) * g)  # [B] member -> prompt
    gens = [torch.Generator().manual_seed(int(s)) for s in noise_seeds]
    anchor = x.float()
    states = anchor[prompt_of].clone()  # [B, ...] members sit on the anchor until they leave it
    paths, x0 = [states.clone()], torch.zeros_like(states)
    log_probs = torch.zeros(len(prompt_of), n)
    for t in range(n):
        sigma, sigma_next = plan.sigmas[t], plan.sigmas[t + 1]
        on = starts > t  # still on the anchor
        now = torch.nonzero(starts == t).flatten()  # leave the anchor at x_t with one window step
        if len(now):
            v_anchor = policy.velocity(anchor, sigma, cond)  # [P, ...]
            step = sde_step(
                anchor[prompt_of[now]],
                v_anchor[prompt_of[now]],
                sigma,
                sigmas[ends[now]],
                noise_level=plan.noise_level,
                kind=plan.sde_kind,
                guard_sigma=plan.guard_sigma,
                noise=_member_noise([gens[i] for i in now.tolist()], x.shape[1:], x.device),
            )
            states[now] = step.x_next
            log_probs[now, t] = step.log_prob.cpu()
            if on.any():
                anchor = ode_step(anchor, v_anchor, sigma, sigma_next)
        elif on.any():
            anchor = ode_step(anchor, policy.velocity(anchor, sigma, cond), sigma, sigma_next)
        tail = torch.nonzero(ends <= t).flatten()  # on their own ODE path at σ_t
        if len(tail):
            v = _velocity(policy, states[tail], sigma, cond.select(prompt_of[tail]), micro_batch)
            x0[tail] = states[tail] - sigma * v.float()
            states[tail] = ode_step(states[tail], v, sigma, sigma_next)
        states[on] = anchor[prompt_of[on]]
        paths.append(states.clone())
    return torch.stack(paths, dim=1).cpu(), log_probs, x0


@dataclass
class BranchPath:
    """One E-GRPO window for a batch: x_start = anchor at σ_s, x_end = SDE sample at σ_e,
    log_prob [B] of that step, x0 = x̂0 at the last model call of the continuation."""

    x_start: torch.Tensor
    x_end: torch.Tensor
    log_prob: torch.Tensor
    x0: torch.Tensor


@torch.no_grad()
def branch_path(velocity, x, sigmas, window, noise, *, noise_level, stride=1) -> BranchPath:
    """ALGORITHMS.md §2.3 for one window (s, e), 0 <= s < e < N, written plainly (the oracle of
    `run_windows`): the ODE anchor from x [B, ...] to σ_s; one flow SDE step σ_s → σ_e with
    `noise` (guard σ' = sigmas[1]); the ODE on the grid σ_e, σ_{e+1}, σ_{e+1+stride}, …
    (stride > 1: a multi-granularity path, which may stop short of σ = 0). `velocity(x, sigma)`
    is the model."""
    sigmas = [float(s) for s in sigmas]
    s, e = window
    n = len(sigmas) - 1
    if not 0 <= s < e < n:
        raise ValueError(f"window {window} must satisfy 0 <= start < end < {n}")
    z = x.float()
    for k in range(s):
        z = ode_step(z, velocity(z, sigmas[k]), sigmas[k], sigmas[k + 1])
    step = sde_step(
        z,
        velocity(z, sigmas[s]),
        sigmas[s],
        sigmas[e],
        noise_level=noise_level,
        kind="flow",
        noise=noise,
        guard_sigma=sigmas[1],
    )
    grid = [sigmas[e]] + sigmas[e + 1 :: stride]
    y = step.x_next
    for a, b in zip(grid[:-1], grid[1:]):
        v = velocity(y, a).float()
        x0 = y - a * v
        y = ode_step(y, v, a, b)
    return BranchPath(x_start=z, x_end=step.x_next, log_prob=step.log_prob, x0=x0)


def all_trainable(latents: torch.Tensor, trainable, seeds) -> tuple[torch.Tensor, torch.Tensor]:
    """The default selection: every trainable transition, each its own chunk."""
    steps = torch.tensor([k for k, t in enumerate(trainable) if t], dtype=torch.long)
    b = latents.shape[0]
    return steps.expand(b, -1).clone(), torch.arange(len(steps)).expand(b, -1).clone()


def generate(
    policy: Policy,
    prompts: list[str],
    columns: list[int],
    plan: RolloutPlan,
    initial_seeds: list[int],
    noise_seeds: list[int],
    policy_version: int,
    micro_batch: int | None = None,
    group_size: int = 1,
    select=None,
) -> tuple[np.ndarray, Trajectory]:
    """Roll out `plan` for a batch: uint8 images [B, H, W, 3] (x̂0 of each sample's last model
    call) and the Trajectory. Members of a group are consecutive; for window plans (E-GRPO) a
    group is K columns of `group_size` members, all sharing the group's initial seed, and
    `columns` label them (RolloutPlan.column_label). `select(latents, trainable, seeds) ->
    (train_steps [B, S], chunk_ids [B, S])` picks what each sample of a path plan trains
    (learner.chunking's ChunkSelector, handed in by the orchestrator; default: every trainable
    transition)."""
    if plan.windows:
        latents, log_probs, x0 = _window_rollout(
            policy, prompts, plan, initial_seeds, noise_seeds, group_size, micro_batch
        )
        members = plan.members_per_group(group_size)
        cols = [plan.windows[(i % members) // group_size] for i in range(len(prompts))]
        train_steps = torch.tensor([[c[0]] for c in cols])  # [B, 1]
        train_ends = torch.tensor([[c[1]] for c in cols])
        chunk_ids = torch.zeros_like(train_steps)
    else:
        step = micro_batch or len(prompts)
        parts = []
        for lo in range(0, len(prompts), step):
            sl = slice(lo, lo + step)
            cond = policy.encode(prompts[sl])
            x = noise_from_seeds(initial_seeds[sl], policy.latent_shape, policy.device)
            parts.append(run_plan(policy, cond, x, plan, noise_seeds[sl]))
        latents, log_probs, x0 = (torch.cat([p[i] for p in parts]) for i in range(3))
        # Training-step selection, from a stream of each member's own seed.
        select = select or all_trainable
        train_steps, chunk_ids = select(
            latents, list(plan.trainable), [derive_seed(s, 1) for s in noise_seeds]
        )
        train_ends = torch.where(train_steps >= 0, train_steps + 1, -1)
    images = policy.decode(x0.to(policy.device))
    traj = Trajectory(
        prompts=list(prompts),
        columns=torch.tensor(columns, dtype=torch.long),
        latents=latents,
        log_probs=log_probs,
        sigmas=torch.tensor(plan.sigmas, dtype=torch.float32),
        train_steps=train_steps,
        train_ends=train_ends,
        chunk_ids=chunk_ids,
        initial_seeds=torch.tensor(initial_seeds, dtype=torch.long),
        noise_seeds=torch.tensor(noise_seeds, dtype=torch.long),
        policy_version=policy_version,
        noise_level=plan.noise_level,
        sde_kind=plan.sde_kind,
        shared_inputs=bool(plan.windows),
    )
    return images, traj


def _window_rollout(policy, prompts, plan, initial_seeds, noise_seeds, group_size, micro_batch):
    """Run whole prompt groups of a window plan, a few prompts per call."""
    members = plan.members_per_group(group_size)
    starts = list(range(0, len(prompts), members))  # first member of each group
    per_call = max(1, (micro_batch or len(prompts)) // group_size)  # prompts per call
    parts = []
    for lo in range(0, len(starts), per_call):
        firsts = starts[lo : lo + per_call]
        cond = policy.encode([prompts[i] for i in firsts])
        x = noise_from_seeds([initial_seeds[i] for i in firsts], policy.latent_shape, policy.device)
        seeds = noise_seeds[firsts[0] : firsts[-1] + members]
        parts.append(run_windows(policy, cond, x, plan, seeds, group_size, micro_batch))
    return tuple(torch.cat([p[i] for p in parts]) for i in range(3))


@torch.no_grad()
def sample_ode(
    policy: Policy,
    prompts: list[str],
    initial_seeds,
    *,
    num_steps: int,
    shift: float = 3.0,
    micro_batch: int = 64,
) -> np.ndarray:
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
