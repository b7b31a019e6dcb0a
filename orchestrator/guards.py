"""Checks that stop a run instead of letting it go on silently wrong, and the driver's honest
count of what came back. All run on the driver, before the iteration's weights are synced or a
checkpoint is written, so the last checkpoint on disk stays the last good one.

    check_rewards(rewards, batches, iteration)       every reward finite
    check_advantages(values, iteration)              every advantage finite
    check_update(stats, iteration)                   loss, gradient norm, KL, ratios finite, and
                                                     the learner's own count of non-finite values
                                                     (`nonfinite`, when it reports one) zero
    check_weights_changed(before, after, ...)        a sync that changed the learner's weights
                                                     changed every rollout worker's output on a
                                                     fixed probe input (RolloutWorker.probe): a
                                                     LoRA load that binds no adapter, or weights
                                                     copied where the forward never reads them,
                                                     pass a state-dict checksum but fail this
    received_groups / first_copies / group_report    the groups the rollout workers reported,
                                                     duplicates and losses included
"""

from __future__ import annotations

import math

import numpy as np

from orchestrator.errors import RunStopped

UPDATE_STATS = ("loss", "grad_norm", "approx_kl", "kl", "ratio_mean", "clip_fraction")


class NonFinite(RunStopped):
    """A reward, advantage, loss or gradient was NaN or infinite."""


class WeightsNotApplied(RunStopped):
    """A sync changed the learner's weights but not what a rollout worker computes."""


def check_rewards(rewards: dict[str, np.ndarray], prompts: list[str], iteration: int) -> None:
    for name, values in rewards.items():
        bad = ~np.isfinite(np.asarray(values, dtype=np.float64))
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise NonFinite(
                f"iteration {iteration}: reward scorer {name!r} returned {values[first]} for "
                f"{int(bad.sum())} of {len(values)} samples (first: prompt {prompts[first]!r}); a "
                "non-finite reward is never trained on. The run stops before the update: fix the "
                "scorer (its inputs, its dtype) and resume"
            )


def check_advantages(values: list, iteration: int) -> None:
    flat = np.asarray(values, dtype=np.float64)
    if flat.size and not np.isfinite(flat).all():
        raise NonFinite(
            f"iteration {iteration}: {int((~np.isfinite(flat)).sum())} advantages are not finite; "
            "the run stops before the update (check reward.scorers and learner.adv_clip)"
        )


def check_update(stats: dict, iteration: int) -> None:
    bad = {k: stats[k] for k in UPDATE_STATS if k in stats and not math.isfinite(stats[k])}
    count = stats.get("nonfinite", 0)
    if bad or count:
        what = ", ".join(f"{k} {v}" for k, v in bad.items()) or f"{count} non-finite values in the update"
        raise NonFinite(
            f"iteration {iteration}: the learner update went non-finite ({what}). The new weights are "
            "neither synced nor checkpointed; lower learner.lr or learner.max_grad_norm, or check "
            "model.dtype, then resume"
        )


def check_weights_changed(before: dict, after: dict, learner_changed: bool, version: int) -> None:
    """`before` / `after`: {worker: probe digest} around the sync of `version`."""
    if not learner_changed:
        return
    same = [k for k in before if k in after and before[k] == after[k]]
    if same:
        raise WeightsNotApplied(
            f"weight sync v{version}: the learner's weights changed, but the output of rollout "
            f"worker(s) {same} on a fixed probe input did not: the loaded weights do not reach the "
            "model (LoRA adapters not bound or not active, or weights copied where the forward never "
            "reads them). The run stops rather than train on stale rollouts; check model.finetune / "
            "model.lora.targets and Policy.load_trainable_state"
        )


# -- what came back ------------------------------------------------------------------------------
def received_groups(batches: list) -> list[int]:
    """Group ids in the order the rollout workers reported them (RolloutBatch.info["groups"]);
    a doubled group appears twice, a lost one not at all."""
    return [g for b in batches for g in b.info.get("groups", [])]


def first_copies(batches: list) -> list[bool]:
    """Per sample: True unless it belongs to a second copy of a prompt group (never trained)."""
    seen: set[int] = set()
    out: list[bool] = []
    for b in batches:
        groups = b.info.get("groups")
        if not groups:
            out += [True] * len(b.groups)
            continue
        members = len(b.groups) // len(groups)
        for g in groups:
            out += [g not in seen] * members
            seen.add(g)
    return out


def group_report(planned: list[int], received: list[int]) -> str | None:
    """What went wrong between the planned and the received groups, or None."""
    doubled = sorted({g for g in received if received.count(g) > 1})
    lost = sorted(set(planned) - set(received))
    if not doubled and not lost:
        return None
    parts = (
        [f"group(s) {doubled} came back more than once (only the first copy is trained)"] if doubled else []
    ) + ([f"group(s) {lost} never came back (not trained)"] if lost else [])
    return f"{len(planned)} groups planned, {len(received)} received: " + "; ".join(parts)
