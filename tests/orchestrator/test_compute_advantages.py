"""The driver's advantages and minibatch schedule for an iteration (orchestrator/run.py), on
hand-made batches: which samples train, with which advantage, in which optimizer step."""

from types import SimpleNamespace

import numpy as np
import pytest

from orchestrator.config import load_config
from orchestrator.run import compute_advantages

TINY = "deploy/configs/tiny.yaml"


def batch(groups, columns=None):
    return SimpleNamespace(
        groups=list(groups), columns=list(columns if columns is not None else groups), info={}
    )  # no "groups" report: every sample is a first copy


def test_zero_spread_groups_are_dropped_and_the_rest_split_in_order():
    # dance_grpo: 3 steps per batch, in order. Group 0 has no spread (dropped); groups 1, 2 of 3:
    # each step takes one member of each -> [[3, 6], [4, 7], [5, 8]] as positions into the kept list
    cfg = load_config(TINY, ["algorithm=dance_grpo", "rollout.group_size=3"])
    rewards = {
        "preference": np.array([1.0, 1.0, 1.0, 0.0, 1.0, 2.0, 3.0, 1.0, 2.0]),
        "alignment": np.array([0.5] * 9),
    }
    adv = compute_advantages(cfg, rewards, [batch([0] * 3 + [1] * 3), batch([2] * 3)], iteration=0)
    assert adv.samples == [3, 4, 5, 6, 7, 8] and adv.zero_std_ratio == pytest.approx(1 / 3)
    # group 1: r = 0, 1, 2 -> z = -1, 0, 1; group 2: r = 3, 1, 2 -> 1, -1, 0 (alignment has no spread: 0)
    assert adv.values == pytest.approx([-1.0, 0.0, 1.0, 1.0, -1.0, 0.0], abs=1e-6)
    assert adv.minibatches == [[0, 3], [1, 4], [2, 5]]


def test_chunk_grpo_shuffles_into_two_steps_seeded_by_iteration():
    cfg = load_config(TINY, ["algorithm=chunk_grpo", "rollout.group_size=4"])
    rewards = {"preference": np.arange(8, dtype=float), "alignment": np.zeros(8)}
    a = compute_advantages(cfg, rewards, [batch([0] * 4 + [1] * 4)], iteration=3)
    b = compute_advantages(cfg, rewards, [batch([0] * 4 + [1] * 4)], iteration=3)
    c = compute_advantages(cfg, rewards, [batch([0] * 4 + [1] * 4)], iteration=4)
    assert a.minibatches == b.minibatches and a.minibatches != c.minibatches
    assert sorted(a.minibatches[0] + a.minibatches[1]) == list(range(8)) and len(a.minibatches) == 2


def test_e_grpo_steps_once_per_column_over_all_prompts():
    # 2 prompts × 2 windows × 2 members; column labels group·K + c
    cfg = load_config(TINY, ["algorithm=e_grpo", "rollout.group_size=2"])
    groups, columns = [0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 6, 6, 7, 7]
    rewards = {"preference": np.array([0.0, 1.0, 2.0, 4.0, 1.0, 3.0, 5.0, 5.0]), "alignment": np.zeros(8)}
    adv = compute_advantages(cfg, rewards, [batch(groups, columns)], iteration=0)
    # column (1, 1) has no spread: dropped; each kept column of 2 has z = ∓0.7071
    assert adv.samples == [0, 1, 2, 3, 4, 5]
    assert adv.values == pytest.approx([-0.70711, 0.70711] * 3, abs=1e-4)
    assert adv.minibatches == [[0, 1, 4, 5], [2, 3]]  # column 0 of both prompts, then column 1


def test_flow_grpo_normalises_by_the_batch_std():
    cfg = load_config(TINY, ["algorithm=flow_grpo", "rollout.group_size=2"])
    # one reward (alignment weight 0 would still count: use one scorer's worth of spread)
    rewards = {"preference": np.array([1.0, 3.0, 2.0, 6.0]), "alignment": np.zeros(4)}
    adv = compute_advantages(cfg, rewards, [batch([0, 0, 1, 1])], iteration=0)
    # reward-level: total = preference; means 2, 4; population std of [1, 3, 2, 6] = 1.8708
    assert adv.values == pytest.approx([-1 / 1.8709, 1 / 1.8709, -2 / 1.8709, 2 / 1.8709], rel=1e-3)
