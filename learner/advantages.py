"""Group-relative advantages (pure math), DESIGN.md §3, ALGORITHMS.md §1.4 / §2.4.

For each group g (a prompt group for DanceGRPO / Chunk-GRPO / Flow-GRPO / MixGRPO, a
(prompt, active step) column for E-GRPO):
    z = (r − mean_g(r)) / (std_g(r) + eps),  std unbiased,          A = clamp(z, ±clip)
E-GRPO's multi-granularity (`granular_advantages`): A = clamp(Σ_granularity z, ±clip).
Flow-GRPO's `global_std` (`batch_std_advantages`): the group mean, but the population std of
the whole batch, + 1e-4 (flow_grpo @ac4c86e flow_grpo/stat_tracking.py).
A group whose rewards are all equal (zero spread, or a single member) carries no signal:
its advantages are exactly 0 (the references' (r − mean)/1e-8 turns float rounding into a
large advantage, ALGORITHMS.md §5) and `zero_spread_groups` reports it so the caller can drop
and count it.

`iteration_advantages` is one iteration's whole computation on plain arrays: the per-scorer
mix, the zero-spread drop, best-of-N, per-chunk reward mixes (the driver's adapter is
orchestrator/run.py `compute_advantages`).
"""

from __future__ import annotations

from dataclasses import dataclass

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


def _centred(
    rewards: torch.Tensor, group_ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(r − mean_g [B], unbiased std_g per sample [B], zero-spread mask [B]), float64."""
    if rewards.shape != group_ids.shape or rewards.ndim != 1:
        raise ValueError(
            f"rewards {tuple(rewards.shape)} and group_ids {tuple(group_ids.shape)} must both be [B]"
        )
    index, num_groups = _group_index(group_ids)
    r = rewards.double()  # [B]
    count = torch.zeros(num_groups, dtype=r.dtype).index_add_(0, index, torch.ones_like(r))  # [G]
    mean = torch.zeros(num_groups, dtype=r.dtype).index_add_(0, index, r) / count
    centred = r - mean[index]  # [B]
    sq = torch.zeros(num_groups, dtype=r.dtype).index_add_(0, index, centred**2)
    std = torch.sqrt(sq / (count - 1).clamp(min=1))  # unbiased
    return centred, std[index], zero_spread_groups(rewards, group_ids)


def _zscores(rewards: torch.Tensor, group_ids: torch.Tensor, eps: float) -> torch.Tensor:
    centred, std, zero = _centred(rewards, group_ids)
    return torch.where(zero, torch.zeros_like(centred), centred / (std + eps))


def granular_advantages(
    rewards: torch.Tensor, group_ids: torch.Tensor, *, eps: float = 1e-8, clip: float = 5.0
) -> torch.Tensor:
    """E-GRPO (ALGORITHMS.md §2.4): rewards [Gr, B], one row per granularity (or [B] for one) ->
    A [B] float32 = clamp(Σ_g z_g, ±clip), z_g the per-group z-score of row g (0 without spread)."""
    rows = rewards[None] if rewards.ndim == 1 else rewards
    if rows.ndim != 2 or rows.shape[1:] != group_ids.shape:
        raise ValueError(
            f"rewards {tuple(rewards.shape)} must be [Gr, B] or [B] for group_ids {tuple(group_ids.shape)}"
        )
    total = sum(_zscores(row, group_ids, eps) for row in rows)
    return total.clamp(-clip, clip).float()


def group_advantages(
    rewards: torch.Tensor, group_ids: torch.Tensor, *, eps: float = 1e-8, clip: float = 5.0
) -> torch.Tensor:
    """Per-group z-scores of rewards [B] -> advantages [B] float32 (module docstring)."""
    if rewards.shape != group_ids.shape or rewards.ndim != 1:
        raise ValueError(
            f"rewards {tuple(rewards.shape)} and group_ids {tuple(group_ids.shape)} must both be [B]"
        )
    return granular_advantages(rewards, group_ids, eps=eps, clip=clip)


def batch_std_advantages(
    rewards: torch.Tensor, group_ids: torch.Tensor, *, eps: float = 1e-4, clip: float = 5.0
) -> torch.Tensor:
    """Flow-GRPO's `global_std`: (r − mean_g) / (population std of all B rewards + eps), clamped;
    0 for a group without spread."""
    centred, _, zero = _centred(rewards, group_ids)
    adv = centred / (rewards.double().std(unbiased=False) + eps)
    return torch.where(zero, torch.zeros_like(adv), adv).clamp(-clip, clip).float()


def combined_advantages(
    rewards: dict[str, torch.Tensor],
    weights: dict[str, float],
    group_ids: torch.Tensor,
    *,
    mode: str,
    eps: float = 1e-8,
    clip: float = 5.0,
    std: str = "group",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-reward advantages [B] and the zero-spread mask [B] (groups without signal).

    mode "advantage" (DanceGRPO / MixGRPO): A = Σ_m w_m·A_m, each A_m normalised in its group;
        a group carries no signal when every reward model has zero spread in it.
    mode "reward" (Flow-GRPO, E-GRPO's reward manager): A = group_advantages(Σ_m w_m·r_m).
    std "group" (group_advantages) or "batch" (batch_std_advantages, with its eps 1e-4).
    """
    if std not in ("group", "batch"):
        raise ValueError(f"advantage std must be 'group' or 'batch', got {std!r}")
    normalise = (
        (lambda r: group_advantages(r, group_ids, eps=eps, clip=clip))
        if std == "group"
        else (lambda r: batch_std_advantages(r, group_ids, clip=clip))
    )
    if mode == "advantage":
        adv = sum(w * normalise(rewards[m]) for m, w in weights.items())
        zero = torch.stack([zero_spread_groups(rewards[m], group_ids) for m in weights]).all(dim=0)
        return adv.float(), zero
    if mode == "reward":
        total = sum(w * rewards[m].double() for m, w in weights.items())
        return normalise(total), zero_spread_groups(total, group_ids)
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
        keep[order[len(order) - top :]] = True
    return keep


@dataclass(frozen=True)
class TrainedAdvantages:
    """What one iteration trains on."""

    samples: list[int]  # indices into the iteration's B samples, ascending
    values: list  # advantage per entry of `samples`: a float, or one per chunk (`chunk_weights`)
    zero_std_ratio: float  # share of the advantage groups without reward spread (all dropped)
    abs_mean: float  # mean |A| over the trained samples


def iteration_advantages(
    rewards: dict,
    groups,
    columns,
    first,
    *,
    by: str,
    weights: dict[str, float],
    chunk_weights: list[dict[str, float]] | None = None,
    aggregation: str,
    clip: float,
    std: str,
    best_of: int | None = None,
) -> TrainedAdvantages:
    """Advantages of one iteration's B samples, from plain per-sample arrays [B]:
    `rewards` {scorer: r}, `groups` (prompt group), `columns` (advantage column: the group's id,
    or E-GRPO's branch column) and `first` (False for a second copy of a group a worker returned
    twice: never normalised with, never trained). Normalised per prompt group or per column
    (`by` "prompt" | "column", learner.advantage_groups) and mixed over the scorers with
    `weights` (combined_advantages); samples whose group has no spread are dropped, best-of-N
    keeps the top and bottom members; with `chunk_weights` each trained sample gets one value per
    chunk, each mix normalised on its own."""
    if by not in ("prompt", "column"):
        raise ValueError(f"advantage groups must be 'prompt' or 'column', got {by!r}")
    used = torch.nonzero(torch.as_tensor(first, dtype=torch.bool)).flatten()  # [U] sample indices
    ids = torch.as_tensor(groups if by == "prompt" else columns)[used]  # [U]
    r = {k: torch.as_tensor(v)[used] for k, v in rewards.items()}

    def mix(w: dict[str, float]) -> tuple[torch.Tensor, torch.Tensor]:
        return combined_advantages(r, w, ids, mode=aggregation, clip=clip, std=std)

    adv, zero = mix(weights)  # [U], [U]
    per_chunk = [mix(w)[0] for w in chunk_weights or []]  # J × [U]
    keep = ~zero
    if best_of:
        keep &= best_of_mask(adv, ids, best_of)
    values = torch.stack(per_chunk, dim=1) if per_chunk else adv  # [U, J] or [U]
    labels = ids.unique()
    kept = used[keep].tolist()
    return TrainedAdvantages(
        samples=kept,
        values=values[keep].tolist(),
        zero_std_ratio=sum(bool(zero[ids == g].all()) for g in labels) / max(len(labels), 1),
        abs_mean=float(adv[keep].abs().mean()) if kept else 0.0,
    )
