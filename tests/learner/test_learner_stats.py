"""The learner's iteration stats aggregate every optimizer step (not the first), over ranks too,
and count non-finite losses and gradient norms; numbers by hand."""

import math

import pytest

from learner.worker import aggregate_steps, worst
from orchestrator.cluster import merge_rank_stats


def step(
    units, loss, kl, grad_norm, ratio_sum, ratio_dev_sum, ratio_min, ratio_max, clipped=0, nonfinite_loss=0
):
    return {
        "units": units,
        "loss": loss,
        "kl": kl,
        "grad_norm": grad_norm,
        "ratio_sum": ratio_sum,
        "ratio_dev_sum": ratio_dev_sum,
        "ratio_min": ratio_min,
        "ratio_max": ratio_max,
        "clipped": clipped,
        "approx_kl_sum": 0.01 * units,
        "transitions": 2 * units,
        "nonfinite_loss": nonfinite_loss,
    }


def test_every_minibatch_counts():
    # three steps: 4, 2 and 2 chunks; kl 0.1, 0.4, 0.7 -> mean 0.4; grad norms 0.5, 3.0, 1.5 -> max 3.0
    steps = [
        step(4, -0.2, 0.1, 0.5, 4.0, 0.0, 1.0, 1.0),
        step(2, 0.4, 0.4, 3.0, 2.2, 0.2, 0.9, 1.3, clipped=1),
        step(2, 0.1, 0.7, 1.5, 1.8, 0.4, 0.8, 1.0, clipped=2),
    ]
    out = aggregate_steps(steps)
    assert out["loss"] == pytest.approx((-0.2 + 0.4 + 0.1) / 3)
    assert out["kl"] == pytest.approx(0.4)  # the first step alone would say 0.1
    assert out["grad_norm"] == 3.0  # the first step alone would say 0.5
    assert out["optimizer_steps"] == 3 and out["chunks"] == 8
    assert out["clip_fraction"] == pytest.approx(3 / 8)
    assert out["ratio_mean"] == pytest.approx(8.0 / 8) and out["approx_kl"] == pytest.approx(0.08 / 16)
    assert (out["ratio_min"], out["ratio_max"]) == (0.8, 1.3)
    assert out["ratio_mean_first"] == 1.0 and out["first_chunks"] == 4
    assert out["ratio_dev_later"] == pytest.approx(0.6 / 4) and out["later_chunks"] == 4
    assert out["nonfinite_loss"] == out["nonfinite_grad"] == 0


def test_non_finite_losses_and_norms_are_counted_and_never_hidden():
    nan, inf = float("nan"), float("inf")
    steps = [
        step(2, 0.1, 0.0, 1.0, 2.0, 0.0, 1.0, 1.0),
        step(2, nan, 0.0, nan, 2.0, 0.1, 1.0, 1.1, nonfinite_loss=2),
        step(2, 0.3, 0.0, 2.0, 2.0, 0.1, 1.0, 1.1),
    ]
    out = aggregate_steps(steps)
    # Python's max(1.0, nan, 2.0) is 2.0 and max(nan, 1.0) is nan: the NaN must win in any order
    assert math.isnan(out["grad_norm"]) and out["nonfinite_grad"] == 1 and out["nonfinite_loss"] == 2
    assert (
        math.isnan(worst([2.0, nan]))
        and worst([inf, nan]) == inf
        and worst([]) == 0.0
        and worst([1.0, 3.0]) == 3.0
    )
    # an empty step (a rank's shard without chunks) leaves ratio min / max alone
    out = aggregate_steps(
        [step(0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0), step(2, 0.0, 0.0, 1.0, 2.4, 0.4, 1.1, 1.3)]
    )
    assert (out["ratio_min"], out["ratio_max"]) == (1.1, 1.3) and out["ratio_mean_first"] == 1.0


def test_ranks_merge_into_one_iteration():
    a = dict(
        aggregate_steps(
            [step(3, -0.1, 0.2, 1.0, 3.0, 0.0, 1.0, 1.0), step(1, 0.3, 0.1, 2.0, 1.2, 0.2, 1.2, 1.2)]
        ),
        learner_s=4.0,
    )
    b = dict(
        aggregate_steps(
            [
                step(0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0),
                step(2, 0.1, 0.3, 2.0, 2.4, 0.4, 1.1, 1.3, nonfinite_loss=1),
            ]
        ),
        learner_s=5.0,
    )
    out = merge_rank_stats([a, b])
    # loss / kl: each rank's share of each step's mean, averaged over the 2 steps, summed over ranks
    assert out["loss"] == pytest.approx((-0.1 + 0.3) / 2 + (0.0 + 0.1) / 2)
    assert out["kl"] == pytest.approx((0.2 + 0.1) / 2 + (0.0 + 0.3) / 2)
    assert out["chunks"] == 6 and out["grad_norm"] == 2.0 and out["optimizer_steps"] == 2
    # rank b's first step had no chunk: the first-step ratio is rank a's 3 chunks, later ones 1 + 2
    assert out["ratio_mean_first"] == 1.0 and out["ratio_dev_later"] == pytest.approx((0.2 + 0.4) / 3)
    assert (
        (out["ratio_min"], out["ratio_max"]) == (1.0, 1.3)
        and out["nonfinite"] == 1
        and out["learner_s"] == 5.0
    )
    # a rank that trained nothing at all reports ratio 1.0, which must not become the minimum
    idle = dict(aggregate_steps([step(0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0)]), learner_s=0.0)
    busy = dict(aggregate_steps([step(2, 0.0, 0.0, 1.0, 2.5, 0.5, 1.2, 1.3)]), learner_s=0.0)
    assert merge_rank_stats([idle, busy])["ratio_min"] == 1.2
