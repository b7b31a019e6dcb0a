import torch

from learner.advantages import group_advantages, zero_spread_groups


def test_hand_worked_groups_and_zero_spread():
    # group 0: r = [1, 2, 3], mean 2, unbiased std 1 -> A = [-1, 0, 1]
    # group 1: r = [10, 10, 10] has no spread -> A = 0
    rewards = torch.tensor([1.0, 2.0, 3.0, 10.0, 10.0, 10.0])
    groups = torch.tensor([0, 0, 0, 1, 1, 1])
    adv = group_advantages(rewards, groups)
    torch.testing.assert_close(adv, torch.tensor([-1.0, 0.0, 1.0, 0.0, 0.0, 0.0]))
    assert zero_spread_groups(rewards, groups).tolist() == [False] * 3 + [True] * 3


def test_clipping_at_five():
    # 99 zeros and one 1: mean 0.01, Σ(r-m)² = 99·1e-4 + 0.99² = 0.99, unbiased var 0.01, std 0.1
    # -> the 1 scores 0.99/0.1 = 9.9, clipped to 5; the zeros score -0.1
    rewards = torch.zeros(100)
    rewards[7] = 1.0
    adv = group_advantages(rewards, torch.zeros(100, dtype=torch.long))
    assert adv[7].item() == 5.0
    torch.testing.assert_close(adv[0], torch.tensor(-0.1))


def test_zero_mean_per_group_with_interleaved_ids():
    torch.manual_seed(0)
    rewards = torch.rand(48)
    groups = torch.randint(0, 6, (48,)) * 7  # arbitrary labels, interleaved
    adv = group_advantages(rewards, groups)
    for g in groups.unique():
        assert abs(adv[groups == g].sum().item()) < 1e-5
        if (groups == g).sum() > 1:
            assert abs(adv[groups == g].std().item() - 1) < 1e-4


def test_singleton_group_gets_zero():
    adv = group_advantages(torch.tensor([0.3, 0.5, 0.9]), torch.tensor([0, 0, 1]))
    assert adv[2].item() == 0.0


def test_aggregation_modes_by_hand():
    from learner.advantages import combined_advantages

    # one group; m1 = [1, 2, 3] -> A1 = [-1, 0, 1]
    # m2 = [3, 3, 6]: mean 4, unbiased var (1 + 1 + 4)/2 = 3 -> A2 = [-1, -1, 2]/√3
    rewards = {"m1": torch.tensor([1.0, 2.0, 3.0]), "m2": torch.tensor([3.0, 3.0, 6.0])}
    ids = torch.zeros(3, dtype=torch.long)
    adv, zero = combined_advantages(rewards, {"m1": 1.0, "m2": 1.0}, ids, mode="advantage")
    s3 = 3**0.5
    torch.testing.assert_close(adv, torch.tensor([-1 - 1 / s3, -1 / s3, 1 + 2 / s3]))
    assert not zero.any()
    # reward mode: r = [4, 5, 9], mean 6, unbiased var (4 + 1 + 9)/2 = 7 -> A = [-2, -1, 3]/√7
    adv, _ = combined_advantages(rewards, {"m1": 1.0, "m2": 1.0}, ids, mode="reward")
    torch.testing.assert_close(adv, torch.tensor([-2.0, -1.0, 3.0]) / 7**0.5)
    # a group is dropped only when every reward model is flat in it
    flat = {"m1": torch.tensor([1.0, 1.0]), "m2": torch.tensor([0.0, 1.0])}
    _, zero = combined_advantages(
        flat, {"m1": 1.0, "m2": 1.0}, torch.zeros(2, dtype=torch.long), mode="advantage"
    )
    assert not zero.any()


def test_best_of_n_keeps_top_and_bottom_halves():
    from learner.advantages import best_of_mask

    # group 0: top 2 = 2.0 (idx 2), 1.1 (idx 5); bottom 2 = -1.2 (idx 1), -0.3 (idx 4)
    adv = torch.tensor([0.5, -1.2, 2.0, 0.1, -0.3, 1.1, 9.0, 8.0, 7.0, 6.0])
    ids = torch.tensor([0] * 6 + [1] * 4)
    keep = best_of_mask(adv, ids, 4)
    assert keep.tolist() == [False, True, True, False, True, True] + [True] * 4


def test_column_advantages_have_zero_mean_per_column():
    torch.manual_seed(0)
    rewards = torch.rand(24)
    columns = torch.arange(24) // 4  # 6 columns of G = 4 (E-GRPO: (prompt, branch))
    adv = group_advantages(rewards, columns)
    for c in range(6):
        assert abs(adv[columns == c].sum().item()) < 1e-5


def test_granular_advantages_sum_z_scores_per_granularity_then_clamp():
    from learner.advantages import granular_advantages

    # one column of 3: granularity 1 r = [1, 2, 3] -> z = [-1, 0, 1];
    # granularity 2 r = [6, 4, 2] -> [1, 0, -1]
    # second column: r1 = [0, 0, 3] (mean 1, std sqrt(3)) -> [-0.57735, -0.57735, 1.1547]; r2 all 5 -> 0
    rewards = torch.tensor([[1.0, 2.0, 3.0, 0.0, 0.0, 3.0], [6.0, 4.0, 2.0, 5.0, 5.0, 5.0]])
    ids = torch.tensor([0, 0, 0, 1, 1, 1])
    torch.testing.assert_close(
        granular_advantages(rewards, ids),
        torch.tensor([0.0, 0.0, 0.0, -0.57735, -0.57735, 1.1547]),
        atol=1e-5,
        rtol=0,
    )
    # clamp after the sum: z = [-1.5, 0.5, 0.5, 0.5] twice sums to [-3, 1, 1, 1]; clip 2 -> [-2, 1, 1, 1]
    r = torch.tensor([0.0, 2.0, 2.0, 2.0])
    twice = granular_advantages(torch.stack([r, r]), torch.zeros(4, dtype=torch.long), clip=2.0)
    torch.testing.assert_close(twice, torch.tensor([-2.0, 1.0, 1.0, 1.0]), atol=1e-6, rtol=0)
    # [B] input = one granularity = group_advantages
    torch.testing.assert_close(granular_advantages(rewards[0], ids), group_advantages(rewards[0], ids))


def test_batch_std_advantages_are_flow_grpos_global_std():
    from learner.advantages import batch_std_advantages

    # flow_grpo stat_tracking.py: (r − mean of the prompt) / (np.std of all rewards + 1e-4)
    # r = [1, 3 | 2, 6]: means 2, 4; population std of [1, 3, 2, 6] = sqrt(3.5) = 1.870829
    rewards = torch.tensor([1.0, 3.0, 2.0, 6.0])
    ids = torch.tensor([0, 0, 1, 1])
    expected = torch.tensor([-1.0, 1.0, -2.0, 2.0]) / (3.5**0.5 + 1e-4)
    torch.testing.assert_close(batch_std_advantages(rewards, ids), expected)


def test_iteration_advantages_on_plain_arrays():
    """One iteration from per-sample arrays: a second copy of group 0 (first=False) is neither
    normalised with nor trained; group 1 has no spread (dropped, counted); chunk mixes and
    best-of-N act on what remains."""
    from learner.advantages import iteration_advantages

    # group 0 (first copy): r = 0, 1, 2 -> mean 1, unbiased std 1 -> z = -1, 0, 1
    # (with its copy 0, 3, 6 it would be 6 members of mean 2: z = -0.79, -0.40, 0, ...)
    rewards = {"pref": [0.0, 1.0, 2.0, 5.0, 5.0, 5.0, 0.0, 3.0, 6.0]}
    groups = [0, 0, 0, 1, 1, 1, 0, 0, 0]
    first = [True] * 6 + [False] * 3
    common = dict(by="prompt", weights={"pref": 1.0}, aggregation="advantage", clip=5.0, std="group")
    a = iteration_advantages(rewards, groups, groups, first, **common)
    assert a.samples == [0, 1, 2] and a.zero_std_ratio == 0.5  # groups 0 and 1; 1 has no spread
    assert a.values == [-1.0, 0.0, 1.0] and abs(a.abs_mean - 2 / 3) < 1e-7
    # per-chunk mixes: weight 1, then weight 2 (advantage mode: 2·z)
    mixes = [{"pref": 1.0}, {"pref": 2.0}]
    c = iteration_advantages(rewards, groups, groups, first, chunk_weights=mixes, **common)
    assert c.values == [[-1.0, -2.0], [0.0, 0.0], [1.0, 2.0]]
    # best-of-2: the bottom and the top member of each group
    assert iteration_advantages(rewards, groups, groups, first, best_of=2, **common).samples == [0, 2]
    # by column: columns 0 | 1 split group 0 into (0, 1) | (2 alone: no spread)
    columns = [0, 0, 1, 2, 2, 2, 0, 0, 1]
    cols = iteration_advantages(rewards, groups, columns, first, **{**common, "by": "column"})
    assert cols.samples == [0, 1] and [round(v, 4) for v in cols.values] == [-0.7071, 0.7071]
