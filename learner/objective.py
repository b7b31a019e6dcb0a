"""The clipped GRPO objective at chunk level (pure math), ALGORITHMS.md §1.4 / §2.5 / §3.

Shapes: B samples, S trained transitions per sample, J chunks.
    log_ratio_t = logp_θ,t − logp_old,t                                  # [B, S]
    ratio_j     = exp(mean_{t ∈ C_j} log_ratio_t)   (geometric mean of step ratios)  # [B, J]
    ℓ_bj        = max(−A_b·ratio_j, −A_b·clip(ratio_j, 1 − ε_lo, 1 + ε_hi))
    L           = mean_{b with a present chunk} mean_{j present in b} ℓ_bj
Every chunk counts once whatever its size, and every sample once whatever its number of
chunks (GCPO divides each ℓ by A·n_b; DanceGRPO's steps are chunks of one, each divided by
A·9; E-GRPO's one window step per member). ε_hi = ε_lo unless `clip_range_high` is given. A
chunk with no unmasked transition is absent. `advantages` may be [B] (one per sample) or
[B, J] (per-chunk reward mixes).
`chunk_losses` gives ℓ_bj itself, for a learner that weights (sample, chunk) terms across
backward passes; `clipped_objective` is its mean as above.
`gaussian_mean_kl` is the exact KL between two transitions with the same std (the policy
and the frozen reference at the same x, σ): ‖mean_θ − mean_ref‖² / (2·std²), averaged over
dimensions like the log-prob (Flow-GRPO's `kl_loss`).
Stats (floats): clip_fraction = share of present chunks with ratio outside [1 − ε_lo, 1 + ε_hi],
approx_kl = ½·mean(log_ratio²) over unmasked transitions, ratio mean / min / max over chunks.
"""

from __future__ import annotations

import torch


def chunk_log_ratio(log_ratio: torch.Tensor, chunk_ids: torch.Tensor, mask: torch.Tensor):
    """Mean log-ratio per chunk: ([B, S], [B, S] int, [B, S] bool) -> ([B, J], present [B, J])."""
    num_chunks = max(int(chunk_ids.max().item()) + 1, 1)  # a block of -1 pads only: one empty chunk
    onehot = torch.nn.functional.one_hot(chunk_ids.clamp(min=0), num_chunks).to(log_ratio.dtype)  # [B, S, J]
    onehot = onehot * (mask & (chunk_ids >= 0)).unsqueeze(-1).to(log_ratio.dtype)
    count = onehot.sum(dim=1)  # [B, J]
    total = torch.einsum("bs,bsj->bj", log_ratio, onehot)  # [B, J]
    present = count > 0
    return total / count.clamp(min=1), present


def chunk_losses(
    log_prob,
    old_log_prob,
    advantages,
    chunk_ids,
    *,
    clip_range: float,
    clip_range_high: float | None = None,
    mask=None,
):
    """(ℓ [B, J], ratio [B, J], present [B, J] bool, log_ratio [B, S], mask [B, S]); module docstring."""
    if log_prob.shape != old_log_prob.shape or log_prob.ndim != 2:
        raise ValueError(
            f"log_prob {tuple(log_prob.shape)} and old_log_prob {tuple(old_log_prob.shape)} must be [B, S]"
        )
    chunk_ids = chunk_ids.expand_as(log_prob).long()  # [S] or [B, S] -> [B, S]
    mask = torch.ones_like(log_prob, dtype=torch.bool) if mask is None else mask.bool()
    log_ratio = log_prob.float() - old_log_prob.float()  # [B, S]
    chunk_lr, present = chunk_log_ratio(log_ratio, chunk_ids, mask)  # [B, J]
    ratio = torch.exp(chunk_lr)  # [B, J]
    adv = advantages.float()
    adv = adv[:, None] if adv.ndim == 1 else adv[:, : ratio.shape[1]]  # [B, 1] or [B, J]
    high = clip_range if clip_range_high is None else clip_range_high
    ratio_clipped = ratio.clamp(1 - clip_range, 1 + high)
    losses = torch.maximum(-adv * ratio, -adv * ratio_clipped)  # [B, J]
    return losses * present, ratio, present, log_ratio, mask


def clipped_objective(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    chunk_ids: torch.Tensor,
    *,
    clip_range: float,
    clip_range_high: float | None = None,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Chunk-level clipped surrogate loss (per-sample mean of chunk losses, then the mean over
    samples with a present chunk) and its stats (module docstring)."""
    losses, ratio, present, log_ratio, mask = chunk_losses(
        log_prob,
        old_log_prob,
        advantages,
        chunk_ids,
        clip_range=clip_range,
        clip_range_high=clip_range_high,
        mask=mask,
    )
    chunks = present.sum(dim=1)  # [B]
    per_sample = losses.sum(dim=1) / chunks.clamp(min=1)  # [B]
    loss = per_sample.sum() / (chunks > 0).sum().clamp(min=1)
    return loss, ratio_stats(ratio, present, log_ratio, mask, clip_range, clip_range_high)


def ratio_stats(
    ratio, present, log_ratio, mask, clip_range: float, clip_range_high: float | None = None
) -> dict[str, float]:
    """clip_fraction, approx_kl, ratio mean / min / max (module docstring)."""
    high = clip_range if clip_range_high is None else clip_range_high
    with torch.no_grad():
        r = ratio[present]
        return {
            "clip_fraction": ((r < 1 - clip_range) | (r > 1 + high)).float().mean().item()
            if r.numel()
            else 0.0,
            "approx_kl": (0.5 * log_ratio[mask] ** 2).mean().item() if mask.any() else 0.0,
            "ratio_mean": r.mean().item() if r.numel() else 1.0,
            "ratio_min": r.min().item() if r.numel() else 1.0,
            "ratio_max": r.max().item() if r.numel() else 1.0,
        }


def gaussian_mean_kl(mean: torch.Tensor, ref_mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, std²) ‖ N(ref_mean, std²)) averaged over non-batch dims -> [B] float32."""
    kl = (mean.float() - ref_mean.float()) ** 2 / (2 * std.float() ** 2)
    return kl.reshape(kl.shape[0], -1).mean(dim=1)
