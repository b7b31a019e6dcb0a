import math

import pytest

from rollout.plan import (
    SlidingWindow,
    entropy_merge_windows,
    entropy_window_plan,
    sde_plan,
    sliding_window_plan,
    step_exp_entropy,
)
from rollout.sde import sigma_schedule

FLUX = sigma_schedule(16, 3.0).tolist()  # E-GRPO's FLUX grid: 16 steps, shift 3


def test_step_exp_entropy_on_the_flux_grid_by_hand():
    # σ_1 = 3·(15/16) / (1 + 2·15/16) = 0.978261. Step 0 (σ = 1, guard σ' = σ_1):
    # g = 0.7·sqrt(1/(1 − 0.978261)) = 4.7477, std = g·sqrt(1 − 0.978261) = 0.7 exactly,
    # E = sqrt(2πe)·0.7 = 4.13273·0.7 = 2.8929
    assert step_exp_entropy(FLUX, 0, 1, 0.7) == pytest.approx(math.sqrt(2 * math.pi * math.e) * 0.7, rel=1e-5)
    # ALGORITHMS.md §2.1: E = 2.89, 2.99, 2.14, 1.76 for k = 0..3
    assert [round(step_exp_entropy(FLUX, k, k + 1, 0.7), 2) for k in range(4)] == [2.89, 2.99, 2.14, 1.76]
    # step 1 by hand: σ_1 = 0.978261, σ_2 = 3·0.875/2.75 = 0.954545; g = 0.7·sqrt(σ_1/(1 − σ_1)) = 4.6958,
    # std = g·sqrt(0.023715) = 0.72314, E = 4.13273·0.72314 = 2.9886
    assert step_exp_entropy(FLUX, 1, 2, 0.7) == pytest.approx(2.9886, abs=2e-4)
    # a window from σ = 1 keeps the base grid's σ_1 as its guard:
    # std(0, 2) = 0.7·sqrt(1/0.021739)·sqrt(1 − 0.954545)
    expected = math.sqrt(2 * math.pi * math.e) * 0.7 * math.sqrt(1 / (1 - FLUX[1])) * math.sqrt(1 - FLUX[2])
    assert step_exp_entropy(FLUX, 0, 2, 0.7) == pytest.approx(expected, rel=1e-5)


def test_flux_default_windows_overlap_and_do_not_rebuild_the_grid():
    # ALGORITHMS.md §2.2: τ = 2.2 on the FLUX grid, active k = 0..7
    assert entropy_merge_windows(FLUX, 0.7) == [
        (0, 1),
        (1, 2),
        (2, 4),
        (3, 5),
        (4, 6),
        (5, 8),
        (6, 9),
        (7, 10),
    ]
    # each window is the shortest that reaches τ: (2, 3) has E 2.14 < 2.2, (2, 4) reaches it
    assert step_exp_entropy(FLUX, 2, 3, 0.7) < 2.2 <= step_exp_entropy(FLUX, 2, 4, 0.7)
    assert step_exp_entropy(FLUX, 5, 7, 0.7) < 2.2 <= step_exp_entropy(FLUX, 5, 8, 0.7)


def test_tau_zero_never_merges_and_windows_follow_the_given_order_and_cap_at_n():
    assert entropy_merge_windows(FLUX, 0.7, tau=0.0) == [(k, k + 1) for k in range(8)]
    assert entropy_merge_windows(FLUX, 0.7, active=[3, 0]) == [(3, 5), (0, 1)]
    # τ out of reach: the window of step 14 is capped at N = 16
    assert entropy_merge_windows(FLUX, 0.7, tau=100.0, active=[14]) == [(14, 16)]


def test_entropy_window_plan_is_the_base_grid_with_one_column_per_active_step():
    plan = entropy_window_plan(16, shift=3.0, noise_level=0.7, tau=2.2)
    assert plan.sigmas == tuple(FLUX) and plan.num_transitions == 16
    assert plan.windows == ((0, 1), (1, 2), (2, 4), (3, 5), (4, 6), (5, 8), (6, 9), (7, 10))
    assert plan.members_per_group(12) == 96
    assert [plan.column(m, 12) for m in (0, 11, 12, 95)] == [0, 0, 1, 7]
    assert plan.column_label(3, 13, 12) == 3 * 8 + 1
    assert plan.guard_sigma == FLUX[1]


def test_a_window_reaching_sigma_zero_is_a_config_error():
    with pytest.raises(
        ValueError, match="rollout.entropy_threshold 50.0: the window of step 0 reaches σ = 0"
    ):
        entropy_window_plan(16, noise_level=0.7, tau=50.0)


def test_sde_plan_never_trains_the_last_unless_asked():
    plan = sde_plan(17, noise_level=0.7, sde_kind="flow")
    assert all(plan.sde) and plan.trainable == (True,) * 16 + (False,)  # GCPO: 16 trainable of 17
    assert sde_plan(4, noise_level=0.3, sde_kind="dance", train_last=True).trainable == (True,) * 4
    assert plan.at(5) is plan


def test_sliding_window_against_mixgrpo_progressive_states():
    """MixGRPO @e5cdd6a fastvideo/utils/grpo_states.py, progressive + prog_overlap + roll_back, for
    25 steps (max_timesteps 23), group_size 4, iters_per_group 25, overlap step 1: the window of
    iteration t starts at t // 25 and is range(s, min(s + 4, 23))."""

    def release(t, ipg=25, size=4, limit=23, stride=1):
        cur, it = 0, 0
        for _ in range(t):  # update_iteration after each iteration
            it += 1
            if it >= ipg:
                it, cur = 0, cur + stride
            if cur > limit:
                cur, it = 0, 0
        return list(range(cur, min(cur + size, limit)))

    window = SlidingWindow(size=4, shift_every=25, stride=1, limit=23)
    for t in list(range(0, 300, 7)) + [299, 549]:
        assert list(window.steps(t)) == release(t), t
    # where the release's window would be empty (s = 23, at t = 575..599) ours rolls back a step earlier
    assert release(580) == [] and list(window.steps(580)) == [0, 1, 2, 3]


def test_sliding_window_plan_is_a_pure_function_of_the_iteration():
    plan = sliding_window_plan(12, noise_level=0.7, sde_kind="flow", size=4, shift_every=2)
    assert plan.sliding.limit == 10  # windows stay below N − 2
    it5 = plan.at(5)  # 5 // 2 = 2 -> transitions 2..5
    assert it5.sde == it5.trainable == tuple(k in (2, 3, 4, 5) for k in range(12)) and it5.sliding is None
    assert plan.at(5) == it5 and plan.at(18).trainable == tuple(k == 9 for k in range(12))  # s = 9: [9, 10)
    assert plan.at(20).trainable == plan.at(0).trainable  # 10 // 2 = 5 ... 20 // 2 = 10 -> rolled back to 0
    runs = plan.describe(6)["sliding_window"]["schedule"]
    assert runs == [
        {"iterations": [0, 1], "sde_steps": [0, 1, 2, 3]},
        {"iterations": [2, 3], "sde_steps": [1, 2, 3, 4]},
        {"iterations": [4, 5], "sde_steps": [2, 3, 4, 5]},
    ]
