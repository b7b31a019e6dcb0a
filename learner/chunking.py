"""Chunk layouts for Chunk-GRPO (pure math), DESIGN.md §3.

    relative_l1(latents)          L1_rel(i) = mean_B ‖x_{i+1} − x_i‖₁ / ‖x_i‖₁   [N]
    dynamics_chunks(l1_rel, K)    contiguous chunk sizes minimising Σ_j Σ_{t∈C_j} (l_t − l̄_j)²
                                  (exact dynamic programme, O(K·N²))
    chunk_ids(sizes)              [N] chunk label of every transition, e.g. [2, 3] -> 0 0 1 1 1
"""

from __future__ import annotations

import torch


def relative_l1(latents: torch.Tensor) -> torch.Tensor:
    """latents [B, N+1, ...] along trajectories -> L1_rel [N] float32."""
    x = latents.float().reshape(latents.shape[0], latents.shape[1], -1)  # [B, N+1, D]
    step = (x[:, 1:] - x[:, :-1]).abs().sum(-1)  # [B, N]
    size = x[:, :-1].abs().sum(-1).clamp(min=1e-12)  # [B, N]
    return (step / size).mean(0)


def dynamics_chunks(l1_rel, num_chunks: int) -> list[int]:
    """Chunk sizes (summing to len(l1_rel)) of the optimal contiguous segmentation."""
    values = [float(v) for v in l1_rel]
    n = len(values)
    if not 1 <= num_chunks <= n:
        raise ValueError(f"num_chunks must be in [1, {n}] for {n} transitions, got {num_chunks}")
    prefix, prefix_sq = [0.0], [0.0]
    for v in values:
        prefix.append(prefix[-1] + v)
        prefix_sq.append(prefix_sq[-1] + v * v)

    def sse(i: int, j: int) -> float:  # cost of one chunk over values[i:j]
        s = prefix[j] - prefix[i]
        return (prefix_sq[j] - prefix_sq[i]) - s * s / (j - i)

    inf = float("inf")
    # cost[k][j]: best cost of splitting values[:j] into k chunks; cut[k][j]: start of the last chunk.
    cost = [[inf] * (n + 1) for _ in range(num_chunks + 1)]
    cut = [[0] * (n + 1) for _ in range(num_chunks + 1)]
    cost[0][0] = 0.0
    for k in range(1, num_chunks + 1):
        for j in range(k, n + 1):
            for i in range(k - 1, j):
                c = cost[k - 1][i] + sse(i, j)
                if c < cost[k][j] - 1e-15:
                    cost[k][j], cut[k][j] = c, i
    sizes, j = [], n
    for k in range(num_chunks, 0, -1):
        i = cut[k][j]
        sizes.append(j - i)
        j = i
    return sizes[::-1]


def chunk_ids(sizes: list[int]) -> torch.Tensor:
    """[sum(sizes)] int64 chunk label per transition."""
    if any(s < 1 for s in sizes):
        raise ValueError(f"chunk sizes must all be >= 1, got {sizes}")
    return torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))


def column_blocks(chunk_ids: torch.Tensor) -> list[list[int]]:
    """Partition the S trained columns of chunk_ids [B, S] into the smallest blocks that keep
    every (sample, chunk) inside one block, so the learner can run backward block by block
    (DanceGRPO's per-step backward, generalised to chunks). Chunk-GRPO: a block per chunk."""
    s = chunk_ids.shape[1]
    parent = list(range(s))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for row in chunk_ids.tolist():
        first: dict[int, int] = {}
        for col, chunk in enumerate(row):
            if chunk < 0:
                continue
            if chunk in first:
                parent[find(col)] = find(first[chunk])
            else:
                first[chunk] = col
    blocks: dict[int, list[int]] = {}
    for col in range(s):
        blocks.setdefault(find(col), []).append(col)
    return sorted(blocks.values())


def chunk_sampling_weights(l1_rel, sizes: list[int], temperature: float = 1.0) -> list[float]:
    """Weighted chunk sampling (Chunk-GRPO): probability of chunk j ∝ (mean L1_rel over C_j)^(1/temperature)."""
    values = torch.as_tensor(l1_rel, dtype=torch.float64)
    ids = chunk_ids(sizes)
    means = torch.zeros(len(sizes), dtype=torch.float64).index_add_(0, ids, values[: len(ids)]) / torch.tensor(sizes)
    weights = means.clamp(min=1e-12) ** (1.0 / temperature)
    return (weights / weights.sum()).tolist()
