"""Rollout plans: which transitions are SDE or ODE, which are trained, and their chunks.

A plan is data, not a branch in the sampler or the driver. N transitions of a schedule
`sigmas[0] = 1 … sigmas[N] = 0`:

    DanceGRPO    every transition SDE; the last one is never trained; each sample trains
                 a random ⌊timestep_fraction·(N−1)⌋ of the others (chunks of size 1).
    Chunk-GRPO   every transition SDE and trained, grouped into chunks, e.g. [2, 3, 4, 7]
                 for the 16 transitions of 17 timesteps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rollout.sde import SDE_KINDS, sigma_schedule


@dataclass(frozen=True)
class RolloutPlan:
    """What a rollout does, as data. N transitions, S trained per sample.

    sigmas            [N+1]  schedule, 1.0 -> 0.0
    sde               [N]    True where the transition is stochastic (and has a log-prob)
    trainable         [N]    True where a sample may train the transition
    chunk_ids         [N]    chunk label of each transition, -1 where never trained
    steps_per_sample  S      how many trainable transitions each sample trains
    """

    sigmas: tuple[float, ...]
    sde: tuple[bool, ...]
    trainable: tuple[bool, ...]
    chunk_ids: tuple[int, ...]
    steps_per_sample: int
    noise_level: float
    sde_kind: str

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

    def select_train_steps(self, generator: torch.Generator) -> torch.Tensor:
        """[S] sorted transition indices one sample trains: all trainable ones, or a random
        subset of S of them drawn with `generator` (DanceGRPO's timestep selection)."""
        candidates = torch.tensor([i for i, t in enumerate(self.trainable) if t])
        if self.steps_per_sample == len(candidates):
            return candidates
        pick = torch.randperm(len(candidates), generator=generator)[: self.steps_per_sample]
        return candidates[pick].sort().values


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
    )
