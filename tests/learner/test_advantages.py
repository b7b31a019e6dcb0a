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
