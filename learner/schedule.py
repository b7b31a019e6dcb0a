"""The update schedule of one iteration, as data (pure).

    minibatch_schedule(...)   the optimizer steps: lists of positions into the trained samples,
                              computed once on the driver; every learner rank takes its shard of
                              each list, so all ranks run the same number of optimizer steps;
                              `epochs` passes over the batch (Flow-GRPO's num_inner_epochs)
    sample_units(...)         the (sample, chunk) terms of a rank's shard of one minibatch
    pack_units(...)           those terms in backward passes of at most `micro_batch` model inputs,
                              a chunk never split (its ratio is one geometric mean)

Orders (ALGORITHMS.md §1.5, §2.5, §3; flow_grpo and MixGRPO in docs/algorithms.md):
    shuffled   a seeded random permutation of the trained samples, split into M near-equal
               minibatches (GCPO: 2 per batch; Flow-GRPO: 2 per epoch)
    in_order   minibatch m holds members [m·G/M, (m+1)·G/M) of every prompt group, in batch
               order: DanceGRPO's and MixGRPO's ranks each hold one prompt group of G and step
               every A = G/M samples, in order (DanceGRPO's 16-GPU script: G 12, A 4, M 3)
    column     E-GRPO: one minibatch per active column k (all prompts' members of window k),
               in the order of k
"""

from __future__ import annotations

import torch

ORDERS = ("shuffled", "in_order", "column")


def minibatch_schedule(
    groups: list[int],
    *,
    minibatches: int,
    order: str,
    seed: int,
    columns: list[int] | None = None,
    epochs: int = 1,
) -> list[list[int]]:
    """Positions into the trained samples, one list per optimizer step (empty ones dropped).
    `groups`: each trained sample's prompt group, in batch order; `columns`: its E-GRPO
    column index (order 'column'); `minibatches` M (orders 'shuffled' and 'in_order').
    `epochs` E passes over the batch, one after the other, the shuffled order drawn anew in
    each (Flow-GRPO train_sd3.py: `for inner_epoch in range(num_inner_epochs): perm = randperm`)."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    return [
        part
        for e in range(epochs)
        for part in _one_epoch(groups, minibatches, order, seed + 7919 * e, columns)
    ]


def _one_epoch(
    groups: list[int], minibatches: int, order: str, seed: int, columns: list[int] | None
) -> list[list[int]]:
    n = len(groups)
    if order == "shuffled":
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
        parts = [p.tolist() for p in torch.tensor_split(perm, minibatches)]
    elif order == "in_order":
        members: dict[int, list[int]] = {}
        for pos, g in enumerate(groups):
            members.setdefault(g, []).append(pos)
        parts = [[] for _ in range(minibatches)]
        for positions in members.values():
            for m, part in enumerate(torch.tensor_split(torch.tensor(positions), minibatches)):
                parts[m] += part.tolist()
        parts = [sorted(p) for p in parts]
    elif order == "column":
        if columns is None or len(columns) != n:
            raise ValueError("minibatch order 'column' needs one column index per trained sample")
        parts = [[pos for pos, c in enumerate(columns) if c == k] for k in sorted(set(columns))]
    else:
        raise ValueError(f"minibatch order must be one of {ORDERS}, got {order!r}")
    return [p for p in parts if p]


def sample_units(chunk_ids: torch.Tensor, rows: list[int]) -> list[tuple[int, list[int]]]:
    """(row, columns of train_steps) of every present (sample, chunk) of `rows`, in row order;
    chunk_ids [b, S] with -1 pads."""
    units = []
    for r in rows:
        by_chunk: dict[int, list[int]] = {}
        for col, j in enumerate(chunk_ids[r].tolist()):
            if j >= 0:
                by_chunk.setdefault(j, []).append(col)
        units += [(r, cols) for cols in by_chunk.values()]
    return units


def pack_units(units: list, micro_batch: int, key) -> list[list]:
    """Consecutive units in passes whose distinct model inputs (`key(row, col)`) number at most
    `micro_batch`; a unit larger than that gets a pass of its own."""
    passes: list[list] = []
    seen: set = set()
    for unit in units:
        row, cols = unit
        new = {key(row, c) for c in cols} - seen
        if passes and len(seen) + len(new) <= micro_batch:
            passes[-1].append(unit)
            seen |= new
        else:
            passes.append([unit])
            seen = {key(row, c) for c in cols}
    return passes
