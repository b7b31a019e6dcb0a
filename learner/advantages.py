"""Group-relative advantages (pure math), DESIGN.md §3.

For each group g (a prompt group for DanceGRPO / Chunk-GRPO, a (prompt, branch step)
column for E-GRPO):
    A = (r − mean_g(r)) / (std_g(r) + eps),  std unbiased,  then clipped to ±clip.
A group whose rewards are all equal (zero spread, or a single member) carries no signal:
its advantages are exactly 0 and `zero_spread_groups` reports it so the caller can drop
and count it.
"""

from __future__ import annotations

import torch


def _group_index(group_ids: torch.Tensor) -> tuple[torch.Tensor, int]:
    _, index = torch.unique(group_ids, return_inverse=True)
    return index, int(index.max().item()) + 1 if index.numel() else 0


def zero_spread_groups(rewards: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """Bool [B]: True where the sample's group has max == min (no signal)."""
    index, num_groups = _group_index(group_ids)
    r = rewards.double()
    hi = torch.full((num_groups,), -torch.inf, dtype=r.dtype).scatter_reduce(0, index, r, "amax")
    lo = torch.full((num_groups,), torch.inf, dtype=r.dtype).scatter_reduce(0, index, r, "amin")
    return (hi == lo)[index]


def group_advantages(
    rewards: torch.Tensor, group_ids: torch.Tensor, *, eps: float = 1e-8, clip: float = 5.0
) -> torch.Tensor:
    """Per-group z-scores of rewards [B] -> advantages [B] float32 (module docstring)."""
    if rewards.shape != group_ids.shape or rewards.ndim != 1:
        raise ValueError(f"rewards {tuple(rewards.shape)} and group_ids {tuple(group_ids.shape)} must both be [B]")
    index, num_groups = _group_index(group_ids)
    r = rewards.double()  # [B]
    count = torch.zeros(num_groups, dtype=r.dtype).index_add_(0, index, torch.ones_like(r))  # [G]
    mean = torch.zeros(num_groups, dtype=r.dtype).index_add_(0, index, r) / count
    centred = r - mean[index]  # [B]
    sq = torch.zeros(num_groups, dtype=r.dtype).index_add_(0, index, centred**2)
    std = torch.sqrt(sq / (count - 1).clamp(min=1))  # unbiased
    adv = (centred / (std[index] + eps)).clamp(-clip, clip)
    adv = torch.where(zero_spread_groups(rewards, group_ids), torch.zeros_like(adv), adv)
    return adv.float()


def combined_advantages(
    rewards: dict[str, torch.Tensor],
    weights: dict[str, float],
    group_ids: torch.Tensor,
    *,
    mode: str,
    eps: float = 1e-8,
    clip: float = 5.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-reward advantages [B] and the zero-spread mask [B] (groups without signal).

    mode "advantage" (DanceGRPO / MixGRPO): A = Σ_m w_m·A_m, each A_m normalised in its group;
        a group carries no signal when every reward model has zero spread in it.
    mode "reward" (Flow-GRPO): A = group_advantages(Σ_m w_m·r_m).
    """
    if mode == "advantage":
        adv = sum(w * group_advantages(rewards[m], group_ids, eps=eps, clip=clip) for m, w in weights.items())
        zero = torch.stack([zero_spread_groups(rewards[m], group_ids) for m in weights]).all(dim=0)
        return adv.float(), zero
    if mode == "reward":
        total = sum(w * rewards[m].double() for m, w in weights.items())
        return group_advantages(total, group_ids, eps=eps, clip=clip), zero_spread_groups(total, group_ids)
    raise ValueError(f"aggregation mode must be 'advantage' or 'reward', got {mode!r}")


def best_of_mask(advantages: torch.Tensor, group_ids: torch.Tensor, k: int) -> torch.Tensor:
    """DanceGRPO's best-of-N: bool [B], True for the top k//2 and the bottom k − k//2 members
    of each group by advantage (ties broken by position)."""
    keep = torch.zeros_like(advantages, dtype=torch.bool)
    for g in group_ids.unique():
        members = torch.nonzero(group_ids == g).flatten()
        order = members[torch.argsort(advantages[members], stable=True)]  # ascending
        top, bottom = k // 2, k - k // 2
        keep[order[:bottom]] = True
        keep[order[len(order) - top:]] = True
    return keep
