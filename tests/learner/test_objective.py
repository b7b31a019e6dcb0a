import math

import pytest
import torch

from learner.objective import clipped_objective


def reference_step_loss(log_prob, old_log_prob, adv, clip_range):
    """Plain per-sample, per-step loop: DanceGRPO's step-level objective."""
    terms = []
    for b in range(len(log_prob)):
        for t in range(len(log_prob[b])):
            ratio = math.exp(log_prob[b][t] - old_log_prob[b][t])
            clipped = min(max(ratio, 1 - clip_range), 1 + clip_range)
            terms.append(-min(ratio * adv[b], clipped * adv[b]))
    return sum(terms) / len(terms)


def test_ratio_one_gives_minus_mean_advantage_and_no_clipping():
    logp = torch.randn(4, 6)
    adv = torch.tensor([1.0, -2.0, 0.5, 3.0])  # mean 0.625
    loss, stats = clipped_objective(logp, logp.clone(), adv, torch.arange(6), clip_range=1e-4)
    assert loss.item() == pytest.approx(-0.625)
    assert stats["clip_fraction"] == 0.0
    assert stats["ratio_mean"] == stats["ratio_min"] == stats["ratio_max"] == 1.0
    assert stats["approx_kl"] == 0.0


def test_size_one_chunks_reproduce_the_per_step_loop():
    torch.manual_seed(0)
    old = torch.randn(5, 7)
    new = old + 0.3 * torch.randn(5, 7)
    adv = torch.randn(5)
    loss, _ = clipped_objective(new, old, adv, torch.arange(7), clip_range=0.2)
    expected = reference_step_loss(new.tolist(), old.tolist(), adv.tolist(), 0.2)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_chunk_ratio_is_the_geometric_mean_of_its_step_ratios():
    # one sample, chunk 0 = steps {0, 1} with step ratios 2 and 8 -> chunk ratio sqrt(16) = 4;
    # chunk 1 = step {2} with ratio 1. A = 1, ε = 0.2:
    # chunk 0: min(4·1, 1.2·1) = 1.2 ; chunk 1: min(1, 1) = 1  -> loss = -(1.2 + 1)/2 = -1.1
    old = torch.zeros(1, 3)
    new = torch.tensor([[math.log(2), math.log(8), 0.0]])
    loss, stats = clipped_objective(new, old, torch.ones(1), torch.tensor([0, 0, 1]), clip_range=0.2)
    assert stats["ratio_max"] == pytest.approx(4.0, rel=1e-6)
    assert loss.item() == pytest.approx(-1.1, rel=1e-6)
    assert stats["clip_fraction"] == 0.5  # 1 of the 2 chunks is outside 1 ± 0.2


def test_negative_advantage_takes_the_pessimistic_branch():
    # ratio e^0.5 = 1.6487 with A = -1: min(-1.6487, -1.2) = -1.6487 -> loss 1.6487 (unclipped)
    loss, _ = clipped_objective(
        torch.tensor([[0.5]]),
        torch.zeros(1, 1),
        -torch.ones(1),
        torch.zeros(1, dtype=torch.long),
        clip_range=0.2,
    )
    assert loss.item() == pytest.approx(math.exp(0.5), rel=1e-6)


def test_mask_drops_transitions_and_empty_chunks():
    old = torch.zeros(2, 4)
    new = torch.tensor([[0.1, 0.1, 5.0, 5.0], [0.1, 0.1, 0.1, 0.1]])
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    chunks = torch.tensor([0, 0, 1, 1])
    loss, stats = clipped_objective(new, old, torch.ones(2), chunks, clip_range=10.0, mask=mask)
    # present chunks: (0,0), (1,0), (1,1), each with ratio e^0.1 -> loss = -e^0.1
    assert loss.item() == pytest.approx(-math.exp(0.1), rel=1e-6)
    assert stats["ratio_max"] == pytest.approx(math.exp(0.1), rel=1e-6)
    # approx KL = ½·mean(Δ²) over the 6 unmasked transitions = ½·0.01
    assert stats["approx_kl"] == pytest.approx(0.005, rel=1e-5)


def test_per_chunk_advantages_and_gradient_flows():
    new = torch.zeros(1, 2, requires_grad=True)
    loss, _ = clipped_objective(
        new, torch.zeros(1, 2), torch.tensor([[1.0, -1.0]]), torch.tensor([0, 1]), clip_range=0.2
    )
    loss.backward()
    # d/dlogp of -ratio·A at ratio 1 is -A, averaged over 2 chunks -> [-0.5, +0.5]
    torch.testing.assert_close(new.grad, torch.tensor([[-0.5, 0.5]]))


def test_kl_is_zero_for_identical_policies_and_exact_by_hand():
    from learner.objective import gaussian_mean_kl

    mean = torch.randn(3, 4, 5)
    std = torch.full((3, 1, 1), 0.5)
    assert torch.equal(gaussian_mean_kl(mean, mean.clone(), std), torch.zeros(3))
    # means differ by 0.5 everywhere, std 0.5: KL per element = 0.25 / (2·0.25) = 0.5
    torch.testing.assert_close(gaussian_mean_kl(mean, mean + 0.5, std), torch.full((3,), 0.5))


def test_a_block_of_pads_only_has_no_chunk_and_zero_loss():
    # weighted chunk sampling pads short selections with -1; a column block can hold pads only
    new = torch.tensor([[0.3, 0.2]], requires_grad=True)
    loss, stats = clipped_objective(
        new, torch.zeros(1, 2), torch.ones(1), torch.tensor([[-1, -1]]), clip_range=0.2
    )
    assert loss.item() == 0.0 and stats["ratio_mean"] == 1.0 and stats["clip_fraction"] == 0.0
    loss.backward()
    assert torch.equal(new.grad, torch.zeros(1, 2))


def test_every_sample_counts_once_whatever_its_number_of_chunks():
    # ALGORITHMS.md §1.4: L = mean_b mean_{j trained by b} ℓ_bj. Ratios 1 (no clipping):
    # sample 0 trains chunks 0 and 1 with A = 1 -> ℓ = -1, -1 -> mean -1
    # sample 1 trains chunk 0 only (its chunk 1 is padding) with A = -3 -> ℓ = 3
    # L = (-1 + 3) / 2 = 1   (a mean over the three (sample, chunk) pairs would give 1/3)
    logp = torch.zeros(2, 3)
    ids = torch.tensor([[0, 1, 1], [0, -1, -1]])
    loss, stats = clipped_objective(logp, logp.clone(), torch.tensor([1.0, -3.0]), ids, clip_range=0.2)
    assert loss.item() == pytest.approx(1.0)


def test_clip_range_high_clips_the_upper_side_only():
    # ratios e^0.3 = 1.3499 (A = +1) and e^-0.3 = 0.7408 (A = -1); ε_lo = 0.1, ε_hi = 0.5:
    # sample 0: max(-1.3499, -min(1.3499, 1.5)) = -1.3499 (inside the upper bound: unclipped)
    # sample 1: max(0.7408, clip(0.7408, 0.9, 1.5) = 0.9) = 0.9 (clipped below)
    # L = (-1.3499 + 0.9) / 2 = -0.22493; both ratios lie outside [0.9, 1.5]? 1.35 no, 0.74 yes -> 0.5
    new = torch.tensor([[0.3], [-0.3]])
    loss, stats = clipped_objective(
        new,
        torch.zeros(2, 1),
        torch.tensor([1.0, -1.0]),
        torch.zeros(1, dtype=torch.long),
        clip_range=0.1,
        clip_range_high=0.5,
    )
    assert loss.item() == pytest.approx((-math.exp(0.3) + 0.9) / 2, rel=1e-6)
    assert stats["clip_fraction"] == 0.5
    symmetric, _ = clipped_objective(
        new, torch.zeros(2, 1), torch.tensor([1.0, -1.0]), torch.zeros(1, dtype=torch.long), clip_range=0.1
    )
    assert symmetric.item() == pytest.approx((-1.1 + 0.9) / 2, rel=1e-6)  # the upper side clips at 1.1 now


def test_chunk_losses_are_the_terms_clipped_objective_averages():
    from learner.objective import chunk_losses

    torch.manual_seed(3)
    old = torch.randn(4, 5)
    new = old + 0.05 * torch.randn(4, 5)
    ids = torch.tensor([[0, 0, 1, 2, 2], [0, 1, 1, 1, -1], [0, 0, 0, 0, 0], [0, 1, -1, -1, -1]])
    adv = torch.randn(4)
    losses, ratio, present, _, _ = chunk_losses(new, old, adv, ids, clip_range=0.02)
    per_sample = [losses[b][present[b]].mean() for b in range(4)]
    loss, _ = clipped_objective(new, old, adv, ids, clip_range=0.02)
    assert loss.item() == pytest.approx(torch.stack(per_sample).mean().item(), rel=1e-6)
    assert present.sum().item() == 3 + 2 + 1 + 2
