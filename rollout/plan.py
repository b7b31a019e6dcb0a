"""Rollout plans: which transitions are SDE or ODE and which a sample may train, as data.

N transitions of the base grid `sigmas[0] = 1 … sigmas[N] = 0` (ALGORITHMS.md §0); transition
k goes σ_k → σ_{k+1}, a *window* (s, e) with e > s + 1 is one stochastic step σ_s → σ_e.

    path plans    one trajectory per member: `sde[k]` marks its stochastic transitions and
                  `trainable[k]` those a sample may train. Which of them it trains, and in
                  which chunks, is the learner's rule (learner.chunking.ChunkSelector),
                  applied by the rollout worker after the rollout.
        DanceGRPO, Chunk-GRPO, Flow-GRPO   every transition SDE; the last is never trained
        MixGRPO      SDE inside a window of transitions that slides with the iteration, ODE
                     elsewhere; the window's transitions are trained (`SlidingWindow`; the
                     plan of iteration t is `plan.at(t)`, a pure function of t, so a resumed
                     run samples exactly what the uninterrupted one would)
    window plans  E-GRPO (§2.2–2.3): per prompt one ODE anchor; for each active start k a
                  column of G members that take one SDE step over the window (k, e) from the
                  anchor's x_k, then follow the ODE on the base grid to σ = 0. Each member
                  trains its window step only.

E-GRPO's windows come from the exponential of the per-element entropy of a step,
`E(s, e) = sqrt(2πe)·std(s, e)` (`step_exp_entropy`): the window of an active start k is
the shortest (k, k + l) with E ≥ τ (`entropy_merge_windows`; τ = 2.2, paper §4.1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from rollout.sde import SDE_KINDS, sigma_schedule, transition_std

SQRT_2_PI_E = math.sqrt(2 * math.pi * math.e)


@dataclass(frozen=True)
class SlidingWindow:
    """MixGRPO's moving SDE window (MixGRPO @e5cdd6a fastvideo/utils/grpo_states.py, progressive
    strategy with overlap and roll-back): at iteration t the window is the transitions
    [s, min(s + size, limit)), s = ((t // shift_every) mod P)·stride, P = the starts
    0, stride, 2·stride, … below `limit` (so a window is never empty)."""

    size: int
    shift_every: int
    stride: int
    limit: int

    def __post_init__(self) -> None:
        if self.size < 1 or self.shift_every < 1 or self.stride < 1:
            raise ValueError(f"sliding window size, shift_every and stride must be >= 1, got {self}")
        if self.limit < 1:
            raise ValueError(
                f"sliding window limit must be >= 1 (a schedule of >= 3 steps), got {self.limit}"
            )

    def start(self, iteration: int) -> int:
        positions = (self.limit - 1) // self.stride + 1
        return (iteration // self.shift_every) % positions * self.stride

    def steps(self, iteration: int) -> range:
        s = self.start(iteration)
        return range(s, min(s + self.size, self.limit))


@dataclass(frozen=True)
class RolloutPlan:
    """What a rollout does, as data. N transitions.

    sigmas       [N+1]  base grid, 1.0 -> 0.0
    sde          [N]    True where the transition is stochastic (path plans; window plans mark
                        the active starts)
    trainable    [N]    True where a sample may train the transition
    windows      [K]    E-GRPO: (start, end) of each active column; empty for path plans
    sliding             MixGRPO: the window that moves with the iteration (`at(iteration)`)
    """

    sigmas: tuple[float, ...]
    sde: tuple[bool, ...]
    trainable: tuple[bool, ...]
    noise_level: float
    sde_kind: str
    windows: tuple[tuple[int, int], ...] = ()
    sliding: SlidingWindow | None = None

    def __post_init__(self) -> None:
        n = len(self.sigmas) - 1
        for name in ("sde", "trainable"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"RolloutPlan.{name} has {len(getattr(self, name))} entries for {n} transitions"
                )
        if self.sde_kind not in SDE_KINDS:
            raise ValueError(f"sde_kind must be one of {SDE_KINDS}, got {self.sde_kind!r}")
        if any(t and not s for t, s in zip(self.trainable, self.sde)):
            raise ValueError("RolloutPlan: a trainable transition must be an SDE transition")
        for start, end in self.windows:
            if not 0 <= start < end < n:
                raise ValueError(f"RolloutPlan window ({start}, {end}) must satisfy 0 <= start < end < {n}")

    @property
    def num_transitions(self) -> int:
        return len(self.sigmas) - 1

    @property
    def guard_sigma(self) -> float:
        """σ' of the flow coefficient at σ = 1: the base grid's σ_1 (every reference's `sigmas[1]`)."""
        return self.sigmas[1]

    def at(self, iteration: int) -> "RolloutPlan":
        """The plan of one iteration: itself, or, with a sliding window, that iteration's window
        as the SDE (and trained) transitions."""
        if self.sliding is None:
            return self
        steps = set(self.sliding.steps(iteration))
        mask = tuple(k in steps for k in range(self.num_transitions))
        return replace(self, sde=mask, trainable=mask, sliding=None)

    def members_per_group(self, group_size: int) -> int:
        """Samples one prompt group produces: G, or G per window (E-GRPO)."""
        return group_size * max(1, len(self.windows))

    def column(self, member: int, group_size: int) -> int:
        """Advantage column of a member within its group: its window (E-GRPO), else 0."""
        return member // group_size if self.windows else 0

    def column_label(self, group: int, member: int, group_size: int) -> int:
        """Global id of a member's (prompt group, column): the group itself unless E-GRPO."""
        return group * max(1, len(self.windows)) + self.column(member, group_size)

    def exp_entropies(self) -> list[float]:
        """E(k, k+1) of every base transition (logged in plan.json)."""
        return [
            _exp_entropy(self.sigmas, k, k + 1, self.noise_level, self.sde_kind)
            for k in range(self.num_transitions)
        ]

    def describe(self, iterations: int) -> dict:
        """plan.json: the grid, SDE / trainable transitions, E per step, windows with their E,
        and for a sliding window the window of every iteration (as runs of iterations)."""
        out = {
            "sigmas": list(self.sigmas),
            "sde": list(self.sde),
            "trainable": list(self.trainable),
            "trainable_steps": [k for k, t in enumerate(self.trainable) if t],
            "noise_level": self.noise_level,
            "sde_kind": self.sde_kind,
            "exp_entropy": self.exp_entropies(),
            "windows": [list(w) for w in self.windows],
            "window_exp_entropy": [
                _exp_entropy(self.sigmas, s, e, self.noise_level, self.sde_kind) for s, e in self.windows
            ],
        }
        if self.sliding is not None:
            runs: list[dict] = []
            for it in range(iterations):
                steps = list(self.sliding.steps(it))
                if runs and runs[-1]["sde_steps"] == steps:
                    runs[-1]["iterations"][1] = it
                else:
                    runs.append({"iterations": [it, it], "sde_steps": steps})
            out["sliding_window"] = {
                "size": self.sliding.size,
                "shift_every": self.sliding.shift_every,
                "stride": self.sliding.stride,
                "limit": self.sliding.limit,
                "schedule": runs,
            }
        return out


def _exp_entropy(sigmas, start: int, end: int, noise_level: float, kind: str) -> float:
    std = transition_std(
        float(sigmas[start]),
        float(sigmas[end]),
        noise_level=noise_level,
        kind=kind,
        guard_sigma=float(sigmas[1]),
    )
    return SQRT_2_PI_E * float(std)


def step_exp_entropy(sigmas, start: int, end: int, noise_level: float) -> float:
    """E(start, end) = sqrt(2πe)·std of the flow step σ_start → σ_end (guard σ' = sigmas[1]):
    the exponential of its per-element entropy, ALGORITHMS.md §0."""
    return _exp_entropy(sigmas, start, end, noise_level, "flow")


def _merge_windows(sigmas, noise_level: float, tau: float, active, kind: str) -> list[tuple[int, int]]:
    n = len(sigmas) - 1
    windows = []
    for k in range(n // 2) if active is None else active:
        length = 1
        while k + length < n and _exp_entropy(sigmas, k, k + length, noise_level, kind) < tau:
            length += 1
        windows.append((k, k + length))
    return windows


def entropy_merge_windows(sigmas, noise_level: float, tau: float = 2.2, active=None) -> list[tuple[int, int]]:
    """E-GRPO's windows (ALGORITHMS.md §2.2): for each active start k (default the first half,
    range(N // 2)), in the order given, (k, k + l) with l the smallest l >= 1 whose
    E(k, k + l) >= tau, capped at N − k. Windows of different starts overlap."""
    return _merge_windows(sigmas, noise_level, tau, active, "flow")


def sde_plan(
    num_steps: int, *, shift: float = 3.0, noise_level: float, sde_kind: str, train_last: bool = False
) -> RolloutPlan:
    """Every transition SDE (DanceGRPO, Chunk-GRPO, Flow-GRPO); the last one trainable only
    with `train_last`."""
    sigmas = tuple(sigma_schedule(num_steps, shift).tolist())
    trainable = tuple(train_last or k < num_steps - 1 for k in range(num_steps))
    return RolloutPlan(
        sigmas=sigmas,
        sde=(True,) * num_steps,
        trainable=trainable,
        noise_level=noise_level,
        sde_kind=sde_kind,
    )


def sliding_window_plan(
    num_steps: int,
    *,
    shift: float = 3.0,
    noise_level: float,
    sde_kind: str,
    size: int,
    shift_every: int,
    stride: int = 1,
) -> RolloutPlan:
    """MixGRPO: SDE (and trained) inside the sliding window, ODE elsewhere. Windows stay below
    N − 2, the release's `max_timesteps = sampling_steps − 2` (an exclusive bound there too)."""
    sliding = SlidingWindow(size=size, shift_every=shift_every, stride=stride, limit=num_steps - 2)
    plan = RolloutPlan(
        sigmas=tuple(sigma_schedule(num_steps, shift).tolist()),
        sde=(False,) * num_steps,
        trainable=(False,) * num_steps,
        noise_level=noise_level,
        sde_kind=sde_kind,
        sliding=sliding,
    )
    return replace(plan.at(0), sliding=sliding)


def entropy_window_plan(
    num_steps: int,
    *,
    shift: float = 3.0,
    noise_level: float,
    sde_kind: str = "flow",
    tau: float = 2.2,
    active_fraction: float = 0.5,
) -> RolloutPlan:
    """E-GRPO's plan: one window per active start k < active_fraction·N, on the base grid
    (never rebuilt). A window that reaches σ = 0 is a configuration error (§2.2)."""
    sigmas = tuple(sigma_schedule(num_steps, shift).tolist())
    active = [k for k in range(num_steps) if k < active_fraction * num_steps]
    if not active:
        raise ValueError(f"rollout.branch_window {active_fraction} leaves no active step; raise it")
    windows = _merge_windows(sigmas, noise_level, tau, active, sde_kind)
    for start, end in windows:
        if end == num_steps:
            e_max = _exp_entropy(sigmas, start, end, noise_level, sde_kind)
            raise ValueError(
                f"rollout.entropy_threshold {tau}: the window of step {start} reaches σ = 0 "
                f"(E({start}, {end}) = {e_max:.3f} < {tau}), so all its members would decode one image; "
                "lower rollout.entropy_threshold or rollout.branch_window"
            )
    mask = tuple(k in active for k in range(num_steps))
    return RolloutPlan(
        sigmas=sigmas,
        sde=mask,
        trainable=mask,
        noise_level=noise_level,
        sde_kind=sde_kind,
        windows=tuple(windows),
    )
