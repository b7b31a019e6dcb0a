"""The one SDE / ODE step of raygrpo, shared by the sampler and the learner (pure math).

Symbols (paper -> code), DESIGN.md §3:
    σ            sigma, sigma_next        noise level of x, from 1 (noise) to 0 (data)
    Δt           dt = sigma_next - sigma  negative: sampling runs from σ=1 to σ=0
    v            velocity                 model output, v ≈ ε − x0
    x̂0, ε̂       x0_hat = x − σ·v,  eps_hat = x + (1−σ)·v
    η / a        noise_level              η of DanceGRPO (0.3 for FLUX), a of Flow-GRPO (0.7)
    g            diffusion coefficient:   kind "dance": g = η            (DanceGRPO)
                                          kind "flow":  g = a·sqrt(σ / (1 − σ'))   (Flow-GRPO,
                                          MixGRPO, E-GRPO; σ' = σ, except at σ = 1 where
                                          σ' = guard_sigma: the base grid's σ_1, which is
                                          σ_next for a one-transition step)
Reverse SDE, one Euler–Maruyama step (marginal-preserving for x_σ = (1−σ)·x0 + σ·ε):
    mean   = x + (v + g²/(2σ)·ε̂)·Δt
    std    = g·sqrt(−Δt)
    x_next = mean + std·ξ,  ξ ~ N(0, I)
log_prob is the Gaussian log-density of x_next under (mean, std), averaged (not summed)
over every non-batch dimension, as every reference implementation does; entropy per
element is ½·log(2πe) + log(std). All of it runs in float32 whatever the input dtype,
because bf16 log-densities of near-identical means lose the ratio (Flow-GRPO's overflow).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SDE_KINDS = ("dance", "flow")
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def sigma_schedule(num_steps: int, shift: float = 3.0) -> torch.Tensor:
    """σ for `num_steps` steps: [num_steps + 1] float32 from 1.0 to 0.0, σ = shift·s/(1+(shift−1)·s)."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if shift <= 0:
        raise ValueError(f"shift must be > 0, got {shift}")
    s = torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64)
    return (shift * s / (1 + (shift - 1) * s)).float()


def flux_resolution_shift(
    image_seq_len: int,
    base_seq_len: int = 256,
    max_seq_len: int = 4096,
    base_shift: float = 0.5,
    max_shift: float = 1.15,
) -> float:
    """FLUX's resolution-dependent shift exp(μ), μ linear in the latent sequence length."""
    slope = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    mu = base_shift + slope * (image_seq_len - base_seq_len)
    return math.exp(mu)


def _per_sample(value: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """A float or [B] tensor -> float32 [B, 1, ..., 1] broadcastable against `like`."""
    t = torch.as_tensor(value, dtype=torch.float32, device=like.device)
    if t.ndim == 0:
        t = t.expand(like.shape[0])
    if t.shape != (like.shape[0],):
        raise ValueError(f"sigma must be a float or shape [{like.shape[0]}], got {tuple(t.shape)}")
    return t.reshape(-1, *([1] * (like.ndim - 1)))


def ode_step(x: torch.Tensor, velocity: torch.Tensor, sigma, sigma_next) -> torch.Tensor:
    """Euler step of the probability-flow ODE: x + v·Δt (float32)."""
    x = x.float()
    dt = _per_sample(sigma_next, x) - _per_sample(sigma, x)
    return x + velocity.float() * dt


def diffusion_coefficient(
    sigma, sigma_next, *, noise_level: float, kind: str, guard_sigma: float | None = None
) -> torch.Tensor:
    """g for one step; sigma / sigma_next are floats or tensors of one shape (returned shape).
    Flow kind at σ = 1: σ' = guard_sigma, or sigma_next when None (Flow-GRPO's guard,
    `sigmas[1]` in every reference, which a merged E-GRPO window must keep)."""
    sigma = torch.as_tensor(sigma, dtype=torch.float32)
    sigma_next = torch.as_tensor(sigma_next, dtype=torch.float32, device=sigma.device)
    if kind == "dance":
        return torch.full_like(sigma, float(noise_level))
    if kind == "flow":
        guard = sigma_next if guard_sigma is None else torch.full_like(sigma, float(guard_sigma))
        sigma_prime = torch.where(sigma >= 1.0, guard, sigma)
        return noise_level * torch.sqrt(sigma / (1 - sigma_prime))
    raise ValueError(f"sde kind must be one of {SDE_KINDS}, got {kind!r}")


def transition_std(
    sigma, sigma_next, *, noise_level: float, kind: str, guard_sigma: float | None = None
) -> torch.Tensor:
    """std = g·sqrt(−Δt) of one transition (same shape as sigma)."""
    sigma = torch.as_tensor(sigma, dtype=torch.float32)
    dt = torch.as_tensor(sigma_next, dtype=torch.float32, device=sigma.device) - sigma
    g = diffusion_coefficient(sigma, sigma_next, noise_level=noise_level, kind=kind, guard_sigma=guard_sigma)
    return g * torch.sqrt(-dt)


def transition_entropy(
    sigma, sigma_next, *, noise_level: float, kind: str, guard_sigma: float | None = None
) -> torch.Tensor:
    """Differential entropy per element of one transition: ½·log(2πe) + log(std)."""
    std = transition_std(sigma, sigma_next, noise_level=noise_level, kind=kind, guard_sigma=guard_sigma)
    return 0.5 * math.log(2 * math.pi * math.e) + torch.log(std)


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, std²) averaged over non-batch dims -> [B] float32."""
    x, mean, std = x.float(), mean.float(), std.float()
    log_density = -((x - mean) ** 2) / (2 * std**2) - torch.log(std) - _HALF_LOG_2PI
    return log_density.reshape(x.shape[0], -1).mean(dim=1)


@dataclass
class SDEStep:
    """Result of `sde_step`. x_next / mean: shape of x, float32; std: [B, 1, ...]; log_prob: [B]."""

    x_next: torch.Tensor
    log_prob: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor


def sde_step(
    x: torch.Tensor,
    velocity: torch.Tensor,
    sigma,
    sigma_next,
    *,
    noise_level: float,
    kind: str,
    noise: torch.Tensor | None = None,
    x_next: torch.Tensor | None = None,
    guard_sigma: float | None = None,
) -> SDEStep:
    """One reverse-SDE transition (module docstring). Samples x_next = mean + std·noise, or,
    when `x_next` is given (the learner path), scores that x_next instead of sampling.
    `guard_sigma`: σ' of the flow coefficient where σ = 1 (None: sigma_next); a step that
    spans several grid transitions (an E-GRPO window) passes the base grid's σ_1."""
    x = x.float()  # [B, ...]
    velocity = velocity.float()
    sigma = _per_sample(sigma, x)  # [B, 1, ...]
    sigma_next = _per_sample(sigma_next, x)
    dt = sigma_next - sigma
    if bool((dt >= 0).any()):
        raise ValueError("sde_step needs sigma_next < sigma (sampling runs from σ=1 to σ=0)")
    g = diffusion_coefficient(sigma, sigma_next, noise_level=noise_level, kind=kind, guard_sigma=guard_sigma)
    eps_hat = x + (1 - sigma) * velocity
    mean = x + (velocity + g**2 / (2 * sigma) * eps_hat) * dt
    std = g * torch.sqrt(-dt)
    if x_next is None:
        if noise is None:
            noise = torch.randn_like(x)
        x_next = mean + std * noise.float()
    x_next = x_next.float()
    return SDEStep(x_next=x_next, log_prob=gaussian_log_prob(x_next, mean, std), mean=mean, std=std)
