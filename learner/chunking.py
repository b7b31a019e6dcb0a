"""Chunks of a trajectory and which of them it trains (pure math), ALGORITHMS.md §1.2–1.3.

A chunk is a run of consecutive trainable transitions; n of them per trajectory.
    uniform_chunks(n, c)          ⌊n/c⌋ chunks of c, then the remainder      (GCPO `set_chunk`)
    scaled_chunks(sizes, n)       a fixed list's boundaries scaled to n transitions ([2,3,4,7]
                                  is itself on 16, [1,2,3,5] on 11)
    adaptive_chunks(l1_rel)       per trajectory: split where the sign of the (order-o)
                                  gradient of L1_rel changes, recursively     (GCPO v3 §4.3)
    trajectory_l1_rel(latents)    l_b[k] = mean|x_{k+1} − x_k| / (mean|x_k| + 1e-8)
    chunk_sampling_probs(l, sizes)  p_j ∝ mean_{k∈C_j} l[k] + 1e-8, or softmax of that
    train_count(K, f)             max(1, int(K·f)) chunks trained of K
`ChunkSelector` composes them: the rollout worker calls it after each rollout (the orchestrator
hands it in, so `rollout` never imports this package) to fill a Trajectory's train_steps and
chunk_ids, from each trajectory's own latents and a generator seeded per sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

MODES = ("step", "fixed", "scaled", "uniform", "adaptive")
WEIGHTINGS = ("uniform", "normalized", "softmax")


def uniform_chunks(num_transitions: int, size: int) -> list[int]:
    """⌊n/c⌋ chunks of `size`, then one chunk of the remainder, last (16, 5 -> [5, 5, 5, 1])."""
    if size < 1 or num_transitions < 1:
        raise ValueError(
            f"uniform_chunks needs num_transitions >= 1 and size >= 1, got {num_transitions}, {size}"
        )
    sizes = [size] * (num_transitions // size)
    rest = num_transitions - sum(sizes)
    return sizes + [rest] if rest else sizes


def scaled_chunks(sizes, num_transitions: int) -> list[int]:
    """The chunk list `sizes` (e.g. GCPO's [2, 3, 4, 7] for 16 transitions) for `num_transitions`:
    each boundary Σ_{i<=j} sizes_i moved to round(boundary · n / Σ sizes) (halves up); chunks that
    would be empty are dropped. [2, 3, 4, 7] on 11: boundaries 1.375, 3.44, 6.19 -> [1, 2, 3, 5]."""
    total = sum(sizes)
    if total < 1 or num_transitions < 1 or any(s < 1 for s in sizes):
        raise ValueError(
            f"scaled_chunks needs sizes >= 1 and num_transitions >= 1, got {list(sizes)}, {num_transitions}"
        )
    bounds, acc = [0], 0
    for s in sizes:
        acc += s
        bounds.append(math.floor(acc * num_transitions / total + 0.5))
    return [b - a for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def _gradient(d: torch.Tensor) -> torch.Tensor:
    """torch.gradient with unit spacing, edge_order 1 (one-sided differences at the ends)."""
    return torch.gradient(d, spacing=1.0, edge_order=1)[0]


def _split(values: torch.Tensor, lo: int, hi: int, order: int, stop_size: int) -> list[int]:
    m = hi - lo
    if m <= stop_size:
        return [m]
    d = values[lo:hi]
    for _ in range(order):
        d = _gradient(d)
    sign = torch.sign(d).tolist()
    runs, start = [], 0
    for t in range(1, m + 1):
        if t == m or sign[t] != sign[start]:
            runs.append((start, t))
            start = t
    if len(runs) == 1:
        runs = [(0, m // 2), (m // 2, m)]
    return [size for a, b in runs for size in _split(values, lo + a, lo + b, order + 1, stop_size)]


def _float64(values) -> torch.Tensor:
    """`values` as float64. A float32 (or narrower) tensor is widened through the shortest decimal
    that round-trips it (0.3f -> 0.3, not 0.30000001192…): where a gradient is flat in exact
    arithmetic its sign is float rounding, and this makes a float32 tensor of decimal values split
    exactly like the same values written in float64 (ALGORITHMS.md's worked examples)."""
    if not isinstance(values, (torch.Tensor, np.ndarray)):
        return torch.as_tensor(values, dtype=torch.float64)  # Python floats are float64 already
    t = torch.as_tensor(values)
    if not t.is_floating_point() or t.dtype == torch.float64:
        return t.to(torch.float64)
    return torch.from_numpy(t.detach().cpu().float().numpy().astype(str).astype(np.float64))


def adaptive_chunks(l1_rel, *, stop_size: int = 5) -> list[list[int]]:
    """Chunk sizes of each trajectory, in step order (ALGORITHMS.md §1.2(c), every constant
    pinned there): split a segment longer than `stop_size` into the maximal runs of equal sign
    (−1, 0, +1) of the order-o gradient of its own L1_rel values, or into halves ⌊m/2⌋, m − ⌊m/2⌋
    when that is one run; recurse on each run with order o + 1 (starting at o = 1).
    `l1_rel` [n] or [B, n] -> one list of sizes per trajectory. The gradients run in float64
    (§1.2(c)); see `_float64` for float32 inputs."""
    values = _float64(l1_rel)
    rows = values[None] if values.ndim == 1 else values
    if rows.ndim != 2 or rows.shape[1] < 1:
        raise ValueError(f"adaptive_chunks needs l1_rel of shape [n] or [B, n], got {tuple(values.shape)}")
    return [_split(row, 0, row.shape[0], 1, stop_size) for row in rows]


def trajectory_l1_rel(latents: torch.Tensor) -> torch.Tensor:
    """latents [B, N+1, ...] along each trajectory -> L1_rel [B, N] float32:
    l_b[k] = mean|x_{k+1} − x_k| / (mean|x_k| + 1e-8), means over all latent elements."""
    x = latents.double().reshape(latents.shape[0], latents.shape[1], -1)  # [B, N+1, D]
    step = (x[:, 1:] - x[:, :-1]).abs().mean(-1)  # [B, N]
    return (step / (x[:, :-1].abs().mean(-1) + 1e-8)).float()


def _per_row_sizes(sizes, rows: int) -> list[list[int]]:
    if sizes and isinstance(sizes[0], (list, tuple)):
        if len(sizes) != rows:
            raise ValueError(f"chunk_sampling_probs: {len(sizes)} size lists for {rows} rows")
        return [[int(s) for s in row if s > 0] for row in sizes]
    return [[int(s) for s in sizes]] * rows


def chunk_sampling_probs(l1_rel, sizes, method: str = "normalized") -> torch.Tensor:
    """Sampling probability of each chunk of each trajectory (ALGORITHMS.md §1.3, GCPO `--sample_weight`):
    w_j = mean_{k∈C_j} l[k] + 1e-8, p = w / Σ w ("normalized") or softmax(w) ("softmax").
    `l1_rel` [B, n]; `sizes` one list for all rows or one per row (0-padded). -> [B, J] float32,
    rows summing to 1, 0 where a row has fewer chunks."""
    if method not in ("normalized", "softmax"):
        raise ValueError(f"chunk sampling method must be 'normalized' or 'softmax', got {method!r}")
    values = torch.as_tensor(l1_rel, dtype=torch.float32)
    values = values[None] if values.ndim == 1 else values
    per_row = _per_row_sizes(sizes, values.shape[0])
    width = max(len(r) for r in per_row)
    out = torch.zeros(values.shape[0], width)
    for b, row_sizes in enumerate(per_row):
        if sum(row_sizes) != values.shape[1]:
            raise ValueError(
                f"chunk sizes {row_sizes} sum to {sum(row_sizes)}, "
                f"not the {values.shape[1]} transitions of l1_rel"
            )
        w = torch.stack([part.mean() for part in torch.split(values[b], row_sizes)]) + 1e-8  # [J_b]
        out[b, : len(w)] = w / w.sum() if method == "normalized" else torch.softmax(w, dim=0)
    return out


def train_count(num_chunks: int, fraction: float) -> int:
    """Chunks a trajectory with `num_chunks` chunks trains: max(1, int(K·fraction))."""
    return max(1, int(num_chunks * fraction))


def chunk_ids(sizes: list[int]) -> torch.Tensor:
    """[sum(sizes)] int64 chunk label per transition, e.g. [2, 3] -> 0 0 1 1 1."""
    if any(s < 1 for s in sizes):
        raise ValueError(f"chunk sizes must all be >= 1, got {sizes}")
    return torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))


@dataclass(frozen=True)
class ChunkSelector:
    """Which transitions of each trajectory its sample trains, in which chunks.

    mode       'step' (chunks of one transition), 'fixed' (`sizes`), 'scaled' (`sizes` scaled to
               the trainable transitions), 'uniform' (`size`), 'adaptive' (`adaptive_chunks` of
               the trajectory's own L1_rel, `stop_size`)
    fraction   a trajectory with K chunks trains train_count(K, fraction) of them
    weighting  'uniform': a uniformly random subset; 'normalized' / 'softmax': drawn without
               replacement, sequentially, ∝ chunk_sampling_probs of the trajectory
    """

    mode: str = "step"
    sizes: tuple[int, ...] = ()
    size: int = 0
    stop_size: int = 5
    fraction: float = 1.0
    weighting: str = "uniform"

    def __post_init__(self) -> None:
        if self.mode not in MODES or self.weighting not in WEIGHTINGS:
            raise ValueError(
                f"ChunkSelector mode {self.mode!r} / weighting {self.weighting!r}; "
                f"modes {MODES}, weightings {WEIGHTINGS}"
            )

    def layouts(self, l1_rel: torch.Tensor) -> list[list[int]]:
        """Chunk sizes of each trajectory over its n trainable transitions (l1_rel [B, n])."""
        b, n = l1_rel.shape
        if self.mode == "adaptive":
            return adaptive_chunks(l1_rel, stop_size=self.stop_size)
        if self.mode == "step":
            sizes = [1] * n
        elif self.mode == "uniform":
            sizes = uniform_chunks(n, self.size)
        elif self.mode == "scaled":
            sizes = scaled_chunks(self.sizes, n)
        else:
            sizes = list(self.sizes)
        if sum(sizes) != n:
            raise ValueError(
                f"chunk sizes {sizes} sum to {sum(sizes)} but the plan trains {n} transitions; set "
                f"learner.chunks.sizes to sizes summing to {n}, "
                "or use learner.chunks.mode: scaled / adaptive / uniform"
            )
        return [sizes] * b

    def choose(self, sizes: list[int], l1_rel: torch.Tensor, generator: torch.Generator) -> list[int]:
        """Indices of the chunks one trajectory trains (sorted)."""
        k = train_count(len(sizes), self.fraction)
        if self.weighting == "uniform":
            picked = torch.randperm(len(sizes), generator=generator)[:k]
        else:
            probs = chunk_sampling_probs(l1_rel[None], sizes, self.weighting)[0].double()
            picked = torch.multinomial(probs, k, replacement=False, generator=generator)
        return sorted(picked.tolist())

    def __call__(self, latents: torch.Tensor, trainable, seeds) -> tuple[torch.Tensor, torch.Tensor]:
        """latents [B, N+1, ...], trainable [N] bools, one seed per sample -> (train_steps
        [B, S], chunk_ids [B, S]), S = number of trainable transitions, -1 padded."""
        steps = torch.tensor([k for k, t in enumerate(trainable) if t], dtype=torch.long)  # [n]
        l1 = trajectory_l1_rel(latents)[:, steps]  # [B, n]: the trainable transitions' own L1_rel
        train_steps = torch.full((len(latents), len(steps)), -1, dtype=torch.long)
        ids = torch.full_like(train_steps, -1)
        for b, sizes in enumerate(self.layouts(l1)):
            labels = chunk_ids(sizes)  # [n]
            chosen = self.choose(sizes, l1[b], torch.Generator().manual_seed(int(seeds[b])))
            keep = torch.isin(labels, torch.tensor(chosen))
            train_steps[b, : int(keep.sum())] = steps[keep]
            ids[b, : int(keep.sum())] = labels[keep]
        return train_steps, ids
