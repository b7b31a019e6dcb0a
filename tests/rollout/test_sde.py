import math

import pytest
import torch

from rollout.sde import (
    ode_step,
    sde_step,
    sigma_schedule,
    transition_entropy,
    transition_std,
)


def test_schedule_shift_one_is_linear_and_shift_three_by_hand():
    assert sigma_schedule(4, shift=1.0).tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]
    # shift 3: σ = 3s / (1 + 2s); s = 0.75 -> 2.25/2.5 = 0.9, s = 0.5 -> 0.75, s = 0.25 -> 0.5
    torch.testing.assert_close(sigma_schedule(4), torch.tensor([1.0, 0.9, 0.75, 0.5, 0.0]))
    assert sigma_schedule(16).shape == (17,)


def test_sde_with_vanishing_noise_is_the_ode_step():
    torch.manual_seed(0)
    x, v = torch.randn(3, 8, 4), torch.randn(3, 8, 4)
    ode = ode_step(x, v, 0.6, 0.4)
    for kind in ("dance", "flow"):
        sde = sde_step(x, v, 0.6, 0.4, noise_level=1e-7, kind=kind)
        torch.testing.assert_close(sde.x_next, ode, atol=1e-5, rtol=0)


def test_log_prob_on_a_worked_example():
    # x = [1, 2], v = [0.5, -1], σ = 0.5 -> 0.25 (dt = -0.25), kind dance, η = 0.5:
    # eps_hat = x + (1-σ)v = [1.25, 1.5]; g²/(2σ) = 0.25
    # mean = x + (v + 0.25·eps_hat)·dt = [1 - 0.8125/4, 2 + 0.625/4] = [0.796875, 2.15625]
    # std = η·sqrt(0.25) = 0.25; take x_next = mean + std·[1, -2]
    # log N per element = -z²/2 - log(0.25) - ½log(2π) = [-0.5, -2] + 1.386294 - 0.918939
    # mean over the 2 elements = -1.25 + 0.467356 = -0.782645
    x = torch.tensor([[1.0, 2.0]])
    v = torch.tensor([[0.5, -1.0]])
    x_next = torch.tensor([[0.796875 + 0.25, 2.15625 - 0.5]])
    out = sde_step(x, v, 0.5, 0.25, noise_level=0.5, kind="dance", x_next=x_next)
    torch.testing.assert_close(out.mean, torch.tensor([[0.796875, 2.15625]]))
    assert out.std.flatten().tolist() == [0.25]
    assert out.log_prob.shape == (1,)
    assert out.log_prob.item() == pytest.approx(-0.782645, abs=1e-6)


def test_flow_kind_is_finite_at_sigma_one():
    # σ = 1, σ_next = 0.9, a = 0.7: σ' = σ_next, g = 0.7·sqrt(1/0.1), std = g·sqrt(0.1) = 0.7
    # mean = x + (v + g²/2·x)·(-0.1) = 0.755·x - 0.1·v
    x, v = torch.tensor([[2.0, -1.0]]), torch.tensor([[1.0, 3.0]])
    out = sde_step(x, v, 1.0, 0.9, noise_level=0.7, kind="flow", noise=torch.zeros(1, 2))
    assert out.std.item() == pytest.approx(0.7, rel=1e-6)
    torch.testing.assert_close(out.mean, torch.tensor([[0.755 * 2 - 0.1, -0.755 - 0.3]]))
    assert torch.isfinite(out.log_prob).all()
    assert transition_std(1.0, 0.9, noise_level=0.7, kind="flow").item() == pytest.approx(0.7, rel=1e-6)


def test_learner_path_scores_the_sampled_x_next_with_the_same_log_prob():
    torch.manual_seed(1)
    x, v = torch.randn(4, 16, 3), torch.randn(4, 16, 3)
    sigma, sigma_next = torch.tensor([1.0, 0.8, 0.5, 0.2]), torch.tensor([0.9, 0.6, 0.3, 0.0])
    for kind, eta in (("dance", 0.3), ("flow", 0.7)):
        sampled = sde_step(x, v, sigma, sigma_next, noise_level=eta, kind=kind)
        scored = sde_step(x, v, sigma, sigma_next, noise_level=eta, kind=kind, x_next=sampled.x_next)
        ratio = torch.exp(scored.log_prob - sampled.log_prob)
        assert torch.equal(ratio, torch.ones(4))


def test_math_is_float32_for_bf16_inputs_and_tensor_sigmas_match_floats():
    torch.manual_seed(2)
    x, v = torch.randn(2, 5).bfloat16(), torch.randn(2, 5).bfloat16()
    noise = torch.randn(2, 5)
    batched = sde_step(
        x, v, torch.tensor([0.7, 0.7]), torch.tensor([0.5, 0.5]), noise_level=0.7, kind="flow", noise=noise
    )
    scalar = sde_step(x, v, 0.7, 0.5, noise_level=0.7, kind="flow", noise=noise)
    assert batched.x_next.dtype == batched.log_prob.dtype == torch.float32
    torch.testing.assert_close(batched.x_next, scalar.x_next)
    torch.testing.assert_close(batched.log_prob, scalar.log_prob)


def test_entropy_is_half_log_2pi_e_plus_log_std_and_grows_with_step_size():
    # dance, η = 0.5, σ 0.5 -> 0.25: std = 0.25, H = ½·log(2πe) + log(0.25)
    h = transition_entropy(0.5, 0.25, noise_level=0.5, kind="dance").item()
    assert h == pytest.approx(0.5 * math.log(2 * math.pi * math.e) + math.log(0.25), abs=1e-6)
    merged = transition_entropy(0.5, 0.0, noise_level=0.5, kind="dance")
    assert merged > transition_entropy(0.5, 0.25, noise_level=0.5, kind="dance")
    assert merged > transition_entropy(0.25, 0.0, noise_level=0.5, kind="dance")


def test_bad_inputs_are_named():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="sde kind"):
        sde_step(x, x, 0.5, 0.4, noise_level=0.5, kind="ddim")
    with pytest.raises(ValueError, match="sigma_next < sigma"):
        sde_step(x, x, 0.4, 0.5, noise_level=0.5, kind="dance")
    with pytest.raises(ValueError, match="shape"):
        sde_step(x, x, torch.tensor([0.5, 0.5, 0.5]), 0.4, noise_level=0.5, kind="dance")


def test_guard_sigma_keeps_the_base_grid_sigma_one_for_a_window_from_sigma_one():
    # window σ = 1 -> 0.8 with the base grid's σ_1 = 0.9 as guard (E-GRPO, VisualGRPO's sigmas[1]):
    # g = 0.7·sqrt(1/(1 − 0.9)) = 2.21359, std = g·sqrt(0.2) = 0.98995; without the guard σ' = 0.8:
    # g = 0.7·sqrt(1/0.2) = 1.56525, std = 0.7
    guarded = transition_std(1.0, 0.8, noise_level=0.7, kind="flow", guard_sigma=0.9).item()
    assert guarded == pytest.approx(0.7 * math.sqrt(10) * math.sqrt(0.2), rel=1e-6)
    assert transition_std(1.0, 0.8, noise_level=0.7, kind="flow").item() == pytest.approx(0.7, rel=1e-6)
    x, v = torch.tensor([[2.0, -1.0]]), torch.tensor([[1.0, 3.0]])
    out = sde_step(x, v, 1.0, 0.8, noise_level=0.7, kind="flow", noise=torch.zeros(1, 2), guard_sigma=0.9)
    # mean = x + (v + g²/2·x)·(−0.2), g² = 4.9
    torch.testing.assert_close(out.mean, x + (v + 2.45 * x) * -0.2)
    assert out.std.item() == pytest.approx(guarded, rel=1e-6)
    # away from σ = 1 the guard changes nothing; for a one-transition step it equals the default
    inner = sde_step(x, v, 0.7, 0.5, noise_level=0.7, kind="flow", noise=torch.zeros(1, 2), guard_sigma=0.9)
    torch.testing.assert_close(
        inner.mean, sde_step(x, v, 0.7, 0.5, noise_level=0.7, kind="flow", noise=torch.zeros(1, 2)).mean
    )
    assert transition_std(1.0, 0.9, noise_level=0.7, kind="flow", guard_sigma=0.9).item() == pytest.approx(
        0.7, rel=1e-6
    )
