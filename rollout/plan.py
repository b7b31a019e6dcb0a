"""Rollout plans: which transitions are SDE or ODE, which are trained, and their chunks.

A plan is data, not a branch in the sampler or the driver. N transitions of a schedule
`sigmas[0] = 1 … sigmas[N] = 0`:

    DanceGRPO    every transition SDE; the last one is never trained; each sample trains
                 a random ⌊timestep_fraction·(N−1)⌋ of the others (chunks of size 1).
    Chunk-GRPO   every transition SDE and trained, grouped into chunks, e.g. [2, 3, 4, 7]
                 for the 16 transitions of 17 timesteps; optionally each sample trains only
                 `chunks_per_sample` chunks drawn without replacement ∝ `chunk_weights`.
    E-GRPO       consecutive low-entropy steps merged into one step σ_k → σ_{k+m}; per prompt
                 one ODE anchor, and for each branch transition b a column of G members that
                 leave the anchor at x_b with one SDE step, then follow the ODE to σ = 0.
                 Each member trains only its branch transition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rollout.sde import SDE_KINDS, sigma_schedule, transition_entropy


@dataclass(frozen=True)
class RolloutPlan:
    """What a rollout does, as data. N transitions, at most S trained per sample.

    sigmas             [N+1]  schedule, 1.0 -> 0.0
    sde                [N]    True where the transition is stochastic (and has a log-prob)
    trainable          [N]    True where a sample may train the transition
    chunk_ids          [N]    chunk label of each transition, -1 where never trained
    steps_per_sample   S      trained transitions per sample (shorter selections pad with -1)
    branches           [K]    E-GRPO: branch transitions; empty for one SDE path per member
    chunk_weights      [J]    weighted chunk sampling: relative probability of each chunk
    chunks_per_sample         > 0: each sample trains this many chunks, drawn ∝ chunk_weights
    entropies          [N]    per-transition entropy under this plan (logged)
    """

    sigmas: tuple[float, ...]
    sde: tuple[bool, ...]
    trainable: tuple[bool, ...]
    chunk_ids: tuple[int, ...]
    steps_per_sample: int
    noise_level: float
    sde_kind: str
    branches: tuple[int, ...] = ()
    chunk_weights: tuple[float, ...] = ()
    chunks_per_sample: int = 0
    entropies: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.sigmas) - 1
        for name in ("sde", "trainable", "chunk_ids"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"RolloutPlan.{name} has {len(getattr(self, name))} entries for {n} transitions")
        if self.sde_kind not in SDE_KINDS:
            raise ValueError(f"sde_kind must be one of {SDE_KINDS}, got {self.sde_kind!r}")
        if any(t and not s for t, s in zip(self.trainable, self.sde)):
            raise ValueError("RolloutPlan: a trainable transition must be an SDE transition")
        if not 1 <= self.steps_per_sample <= sum(self.trainable):
            raise ValueError(
                f"RolloutPlan trains {self.steps_per_sample} transitions per sample but only "
                f"{sum(self.trainable)} are trainable"
            )

    @property
    def num_transitions(self) -> int:
        return len(self.sigmas) - 1

    @property
    def num_chunks(self) -> int:
        return max(self.chunk_ids) + 1

    def members_per_group(self, group_size: int) -> int:
        """Samples one prompt group produces: G, or G per branch (E-GRPO)."""
        return group_size * max(1, len(self.branches))

    def column(self, member: int, group_size: int) -> int:
        """Advantage column of a member within its group: its branch (E-GRPO), else 0."""
        return member // group_size if self.branches else 0

    def column_label(self, group: int, member: int, group_size: int) -> int:
        """Global id of a member's (prompt group, column): the group itself unless E-GRPO."""
        return group * max(1, len(self.branches)) + self.column(member, group_size)

    def select_train_steps(self, generator: torch.Generator, member: int = 0, group_size: int = 1) -> torch.Tensor:
        """[S] transition indices one sample trains (sorted; -1 pads a shorter selection)."""
        if self.branches:
            return torch.tensor([self.branches[self.column(member, group_size)]])
        candidates = torch.tensor([i for i, t in enumerate(self.trainable) if t])
        if self.chunks_per_sample:
            probs = torch.tensor(self.chunk_weights, dtype=torch.float64)
            chosen = torch.multinomial(probs, self.chunks_per_sample, replacement=False, generator=generator)
            ids = torch.tensor(self.chunk_ids)
            steps = torch.nonzero(torch.isin(ids, chosen)).flatten()
        elif self.steps_per_sample == len(candidates):
            return candidates
        else:
            pick = torch.randperm(len(candidates), generator=generator)[: self.steps_per_sample]
            steps = candidates[pick].sort().values
        return torch.cat([steps, torch.full((self.steps_per_sample - len(steps),), -1, dtype=torch.long)])


def sde_plan(
    num_steps: int,
    *,
    shift: float = 3.0,
    noise_level: float,
    sde_kind: str,
    train_last: bool,
    timestep_fraction: float = 1.0,
    chunk_sizes: list[int] | None = None,
    ode_last: bool = False,
    chunk_weights: list[float] | None = None,
    chunks_per_sample: int = 0,
) -> RolloutPlan:
    """An SDE plan (DanceGRPO, Chunk-GRPO). `chunk_sizes` None means chunks of size 1.
    `ode_last` makes the final transition deterministic (and so untrained): in pixel space
    its noise, std = g·sqrt(σ_{N−1}), would stay in the image."""
    if ode_last and train_last:
        raise ValueError("the last transition cannot be trained when it is an ODE step; set learner.train_last_step: false")
    sigmas = sigma_schedule(num_steps, shift).tolist()
    trainable = [train_last or i < num_steps - 1 for i in range(num_steps)]
    n_train = sum(trainable)
    if chunk_sizes is None:
        chunk_sizes = [1] * n_train
    if sum(chunk_sizes) != n_train:
        raise ValueError(
            f"chunk sizes {list(chunk_sizes)} sum to {sum(chunk_sizes)} but the plan trains "
            f"{n_train} transitions; set learner.chunks.sizes to sizes summing to {n_train}, "
            "or use learner.chunks.mode: uniform / dynamics"
        )
    labels = iter(torch.repeat_interleave(torch.arange(len(chunk_sizes)), torch.tensor(chunk_sizes)).tolist())
    chunk_ids = [next(labels) if t else -1 for t in trainable]
    if not 0 < timestep_fraction <= 1:
        raise ValueError(f"timestep_fraction must be in (0, 1], got {timestep_fraction}")
    steps = n_train if timestep_fraction == 1 else math.floor(timestep_fraction * n_train)
    if chunks_per_sample:
        if not chunk_weights or len(chunk_weights) != len(chunk_sizes):
            raise ValueError(f"weighted chunk sampling needs one weight per chunk ({len(chunk_sizes)}), got {chunk_weights}")
        if not 1 <= chunks_per_sample <= len(chunk_sizes):
            raise ValueError(f"learner.chunks.per_sample must be in [1, {len(chunk_sizes)}], got {chunks_per_sample}")
        steps = sum(sorted(chunk_sizes)[-chunks_per_sample:])
    if steps < 1:
        raise ValueError(
            f"timestep_fraction {timestep_fraction} of {n_train} trainable transitions trains none; raise it"
        )
    return RolloutPlan(
        sigmas=tuple(sigmas),
        sde=tuple(not (ode_last and i == num_steps - 1) for i in range(num_steps)),
        trainable=tuple(trainable),
        chunk_ids=tuple(chunk_ids),
        steps_per_sample=steps,
        noise_level=noise_level,
        sde_kind=sde_kind,
        chunk_weights=tuple(chunk_weights or ()),
        chunks_per_sample=chunks_per_sample,
        entropies=tuple(_entropies(sigmas, noise_level, sde_kind)),
    )


def _entropies(sigmas: list[float], noise_level: float, sde_kind: str) -> list[float]:
    s = torch.tensor(sigmas)
    return transition_entropy(s[:-1], s[1:], noise_level=noise_level, kind=sde_kind).tolist()


def merge_low_entropy(sigmas: list[float], noise_level: float, sde_kind: str, threshold: float | str) -> list[int]:
    """Indices into `sigmas` of the merged schedule's boundaries (first 0, last N).

    A step whose entropy clears the threshold stays alone; a run of low-entropy steps is
    merged, from its start, into steps σ_k → σ_{k+m} that grow until they clear the
    threshold or the run ends. threshold "adaptive" = the mean entropy over steps."""
    h = _entropies(sigmas, noise_level, sde_kind)
    thr = sum(h) / len(h) if threshold == "adaptive" else float(threshold)
    n, bounds, i = len(h), [0], 0

    def merged(a: int, b: int) -> float:
        return transition_entropy(sigmas[a], sigmas[b], noise_level=noise_level, kind=sde_kind).item()

    while i < n:
        j = i + 1
        while h[i] < thr and j < n and h[j] < thr and merged(i, j) < thr:
            j += 1
        bounds.append(j)
        i = j
    return bounds


def entropy_branch_plan(
    num_steps: int,
    *,
    shift: float = 3.0,
    noise_level: float,
    sde_kind: str,
    threshold: float | str = "adaptive",
    branch_window: float = 0.5,
) -> RolloutPlan:
    """E-GRPO's plan: merged schedule, branch transitions = merged steps starting in the
    first `branch_window` of the original N transitions."""
    base = sigma_schedule(num_steps, shift).tolist()
    bounds = merge_low_entropy(base, noise_level, sde_kind, threshold)
    sigmas = [base[b] for b in bounds]
    branches = tuple(k for k, start in enumerate(bounds[:-1]) if start < branch_window * num_steps)
    if not branches:
        raise ValueError(f"rollout.branch_window {branch_window} leaves no branch step; raise it")
    m = len(sigmas) - 1
    is_branch = [k in branches for k in range(m)]
    return RolloutPlan(
        sigmas=tuple(sigmas),
        sde=tuple(is_branch),
        trainable=tuple(is_branch),
        chunk_ids=tuple(branches.index(k) if k in branches else -1 for k in range(m)),
        steps_per_sample=1,
        noise_level=noise_level,
        sde_kind=sde_kind,
        branches=branches,
        entropies=tuple(_entropies(sigmas, noise_level, sde_kind)),
    )
