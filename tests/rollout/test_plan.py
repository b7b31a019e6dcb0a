import math
from collections import Counter

import pytest
import torch

from rollout.plan import entropy_branch_plan, merge_low_entropy, sde_plan
from rollout.sde import sigma_schedule, transition_entropy


@pytest.mark.parametrize("n, tau", [(16, 0.6), (12, 0.6), (10, 0.3)])
def test_timestep_selection_never_trains_the_last_and_picks_floor_tau(n, tau):
    plan = sde_plan(n, noise_level=0.3, sde_kind="dance", train_last=False, timestep_fraction=tau)
    expected = math.floor(tau * (n - 1))  # e.g. ⌊0.6 · 15⌋ = 9
    seen = set()
    for seed in range(200):
        steps = plan.select_train_steps(torch.Generator().manual_seed(seed))
        assert len(steps) == len(set(steps.tolist())) == expected
        assert steps.max() < n - 1
        seen.update(steps.tolist())
    assert seen == set(range(n - 1))  # every other transition gets picked by someone


def test_weighted_chunk_sampling_frequencies_match_the_weights():
    # chunks [2, 3, 4, 7] with weights 0.1, 0.2, 0.3, 0.4; one chunk per sample
    plan = sde_plan(16, noise_level=0.7, sde_kind="flow", train_last=True, chunk_sizes=[2, 3, 4, 7],
                    chunk_weights=[0.1, 0.2, 0.3, 0.4], chunks_per_sample=1)
    assert plan.steps_per_sample == 7  # the largest chunk; shorter picks pad with -1
    gen = torch.Generator().manual_seed(0)
    counts = Counter()
    for _ in range(4000):
        steps = plan.select_train_steps(gen)
        real = steps[steps >= 0]
        chunk = {plan.chunk_ids[i] for i in real.tolist()}
        assert len(chunk) == 1 and len(real) == [2, 3, 4, 7][chunk.pop()]
        counts[plan.chunk_ids[int(real[0])]] += 1
    freq = [counts[j] / 4000 for j in range(4)]
    assert freq == pytest.approx([0.1, 0.2, 0.3, 0.4], abs=0.025)


def test_weighted_sampling_without_replacement_picks_distinct_chunks():
    plan = sde_plan(8, noise_level=0.7, sde_kind="flow", train_last=True, chunk_sizes=[2, 2, 4],
                    chunk_weights=[0.98, 0.01, 0.01], chunks_per_sample=2)
    gen = torch.Generator().manual_seed(1)
    for _ in range(50):
        steps = plan.select_train_steps(gen)
        chunks = [plan.chunk_ids[i] for i in steps.tolist() if i >= 0]
        assert 0 in chunks and len(set(chunks)) == 2  # chunk 0 nearly always, never twice


def test_merging_by_hand():
    # dance, η = 1, linear schedule N = 4 (shift 1): each step has dt = -0.25,
    # H = ½log(2πe) + ½log(0.25). Threshold ½log(2πe) + ½log(0.5): one step is below it, two
    # merged steps (dt = -0.5) reach it exactly -> merged pairs: boundaries [0, 2, 4].
    sigmas = sigma_schedule(4, shift=1.0).tolist()
    thr = 0.5 * math.log(2 * math.pi * math.e) + 0.5 * math.log(0.5)
    assert merge_low_entropy(sigmas, 1.0, "dance", thr - 1e-6) == [0, 2, 4]
    # a threshold every single step clears merges nothing
    assert merge_low_entropy(sigmas, 1.0, "dance", -10.0) == [0, 1, 2, 3, 4]


def test_entropy_branch_plan_merges_low_entropy_steps_and_branches_in_the_first_half():
    plan = entropy_branch_plan(12, noise_level=0.7, sde_kind="flow", threshold="adaptive", branch_window=0.5)
    base = sigma_schedule(12).tolist()
    h = transition_entropy(torch.tensor(base[:-1]), torch.tensor(base[1:]), noise_level=0.7, kind="flow")
    thr = h.mean().item()
    merged_sigmas = plan.sigmas
    assert merged_sigmas[0] == 1.0 and merged_sigmas[-1] == 0.0 and set(merged_sigmas) <= set(base)
    for a, b in zip(merged_sigmas[:-1], merged_sigmas[1:]):
        i, j = base.index(a), base.index(b)
        if j - i > 1:  # a merged step: made of low-entropy steps, more entropy than any part
            assert all(h[k] < thr for k in range(i, j))
            whole = transition_entropy(a, b, noise_level=0.7, kind="flow").item()
            assert all(whole > h[k] for k in range(i, j))
    starts = [base.index(s) for s in merged_sigmas[:-1]]
    assert list(plan.branches) == [k for k, s in enumerate(starts) if s < 6]
    assert plan.steps_per_sample == 1 and plan.members_per_group(4) == 4 * len(plan.branches)
    assert [plan.column(m, 4) for m in range(8)] == [0] * 4 + [1] * 4
