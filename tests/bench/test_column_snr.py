"""bench/column_snr.py's estimator: hand-computed pair means, and its signal share against the
closed form for a reward linear in the noise (and ~0 for a reward that ignores it)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import column_snr  # noqa: E402


def test_pair_mean_by_hand():
    g = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # ordered pairs r != s: g1·g2 = 0, g1·g3 = 1, g2·g3 = 1, each twice -> 4 / 6
    assert column_snr.pair_mean(g) == pytest.approx(4 / 6)


def test_column_direction_by_hand():
    rewards = torch.tensor([[0.0, 1.0, 2.0]])  # mean 1, unbiased std 1 -> A = (-1, 0, 1)
    eps = torch.tensor([[[1.0, 0.0], [5.0, 5.0], [0.0, 2.0]]])
    expected = torch.tensor([[(-1 * 1 + 1 * 0) / 3, (-1 * 0 + 1 * 2) / 3]])
    assert torch.allclose(column_snr.column_direction(rewards, eps), expected, atol=1e-6)


def test_linear_ceiling_by_hand():
    # G = 8: c4 = 0.965030 (tabulated), so 7 · 0.931283 / (8 + 50 − 2) = 0.116410
    assert column_snr.linear_ceiling(8, 50) == pytest.approx(0.116410, abs=1e-5)


def _share(reward_of, group=8, dims=50, repeats=600, seed=0):
    gen = torch.Generator().manual_seed(seed)
    eps = torch.randn(repeats, 1, group, dims, generator=gen)
    g = torch.stack([column_snr.column_direction(reward_of(e), e)[0] for e in eps])  # [R, D]
    return column_snr.pair_mean(g) / float((g * g).sum(1).mean())


def test_linear_reward_reaches_the_ceiling_and_noise_reward_does_not():
    w = torch.zeros(50)
    w[3] = 1.0
    linear = _share(lambda e: e @ w)
    assert linear == pytest.approx(column_snr.linear_ceiling(8, 50), rel=0.15)
    gen = torch.Generator().manual_seed(1)
    blind = _share(lambda e: torch.randn(e.shape[:2], generator=gen))
    assert abs(blind) < 0.02
