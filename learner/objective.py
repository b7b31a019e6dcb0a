"""The clipped GRPO objective at chunk level (pure math), DESIGN.md §3.

Shapes: B samples, S trained transitions per sample, J chunks.
    log_ratio_t = logp_θ,t − logp_old,t                                  # [B, S]
    ratio_j     = exp(mean_{t ∈ C_j} log_ratio_t)   (geometric mean of step ratios)  # [B, J]
    L           = − mean_{(b, j) present} min(ratio_j·A_b, clip(ratio_j, 1−ε, 1+ε)·A_b)
Chunks of size one are exactly DanceGRPO's step-level objective (mean over samples and
steps). A chunk with no unmasked transition is absent and not averaged. `advantages` may
be [B] (one per sample) or [B, J] (per-chunk reward mixes).
`gaussian_mean_kl` is the exact KL between two transitions with the same std (the policy
and the frozen reference at the same x, σ): ‖mean_θ − mean_ref‖² / (2·std²), averaged over
dimensions like the log-prob.
Stats (floats): clip_fraction = share of present chunks with |ratio−1| > ε,
approx_kl = ½·mean(log_ratio²) over unmasked transitions, ratio mean / min / max.
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


def clipped_objective(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    chunk_ids: torch.Tensor,
    *,
    clip_range: float,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Chunk-level clipped surrogate loss and its stats (module docstring)."""
    if log_prob.shape != old_log_prob.shape or log_prob.ndim != 2:
        raise ValueError(f"log_prob {tuple(log_prob.shape)} and old_log_prob {tuple(old_log_prob.shape)} must be [B, S]")
    chunk_ids = chunk_ids.expand_as(log_prob).long()  # [S] or [B, S] -> [B, S]
    mask = torch.ones_like(log_prob, dtype=torch.bool) if mask is None else mask.bool()
    log_ratio = log_prob.float() - old_log_prob.float()  # [B, S]
    chunk_lr, present = chunk_log_ratio(log_ratio, chunk_ids, mask)  # [B, J]
    ratio = torch.exp(chunk_lr)  # [B, J]
    adv = advantages.float()
    adv = adv[:, None] if adv.ndim == 1 else adv[:, : ratio.shape[1]]  # [B, 1] or [B, J]
    ratio_clipped = ratio.clamp(1 - clip_range, 1 + clip_range)
    per_chunk = -torch.minimum(ratio * adv, ratio_clipped * adv)  # [B, J]
    n = present.sum().clamp(min=1)
    loss = (per_chunk * present).sum() / n
    with torch.no_grad():
        r = ratio[present]
        stats = {
            "clip_fraction": ((r - 1).abs() > clip_range).float().mean().item() if r.numel() else 0.0,
            "approx_kl": (0.5 * log_ratio[mask] ** 2).mean().item() if mask.any() else 0.0,
            "ratio_mean": r.mean().item() if r.numel() else 1.0,
            "ratio_min": r.min().item() if r.numel() else 1.0,
            "ratio_max": r.max().item() if r.numel() else 1.0,
        }
    return loss, stats


def gaussian_mean_kl(mean: torch.Tensor, ref_mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, std²) ‖ N(ref_mean, std²)) averaged over non-batch dims -> [B] float32."""
    kl = (mean.float() - ref_mean.float()) ** 2 / (2 * std.float() ** 2)
    return kl.reshape(kl.shape[0], -1).mean(dim=1)
