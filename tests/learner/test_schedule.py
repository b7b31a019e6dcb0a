import pytest
import torch

from learner.schedule import minibatch_schedule, pack_units, sample_units


def test_shuffled_is_a_seeded_permutation_in_near_equal_parts():
    groups = [g for g in range(4) for _ in range(6)]  # 4 prompts × 6
    a = minibatch_schedule(groups, minibatches=2, order="shuffled", seed=7)
    assert [len(p) for p in a] == [12, 12] and sorted(a[0] + a[1]) == list(range(24))
    assert a == minibatch_schedule(groups, minibatches=2, order="shuffled", seed=7)
    assert a != minibatch_schedule(groups, minibatches=2, order="shuffled", seed=8)
    assert a[0] != sorted(a[0])  # not contiguous, not in order
    assert [len(p) for p in minibatch_schedule(list(range(5)), minibatches=2, order="shuffled", seed=0)] == [
        3,
        2,
    ]


def test_in_order_takes_the_same_members_of_every_group():
    # DanceGRPO's 16-GPU script: one group of 12 per rank, a step every A = 4 samples -> 3 steps,
    # step m holds members 4m..4m+3 of every group
    groups = [g for g in (5, 9) for _ in range(12)]
    parts = minibatch_schedule(groups, minibatches=3, order="in_order", seed=0)
    assert parts == [
        [0, 1, 2, 3, 12, 13, 14, 15],
        [4, 5, 6, 7, 16, 17, 18, 19],
        [8, 9, 10, 11, 20, 21, 22, 23],
    ]
    # best-of-N leaves 3 members of a group: split 1 / 1 / 1
    parts = minibatch_schedule([0, 0, 0, 1, 1, 1, 1, 1, 1], minibatches=3, order="in_order", seed=0)
    assert parts == [[0, 3, 4], [1, 5, 6], [2, 7, 8]]


def test_column_order_is_one_step_per_active_column():
    # E-GRPO: 2 prompts × 3 columns × 2 members; the positions of column k over both prompts
    columns = [0, 0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 2]
    parts = minibatch_schedule([0] * 6 + [1] * 6, minibatches=1, order="column", seed=0, columns=columns)
    assert parts == [[0, 1, 6, 7], [2, 3, 8, 9], [4, 5, 10, 11]]
    with pytest.raises(ValueError, match="column index"):
        minibatch_schedule([0, 0], minibatches=1, order="column", seed=0)


def test_empty_minibatches_are_dropped():
    # 2 members split 3 ways: [0], [1], [] -> the empty step is not taken
    assert minibatch_schedule([0, 0], minibatches=3, order="in_order", seed=0) == [[0], [1]]
    assert len(minibatch_schedule([0, 0], minibatches=3, order="shuffled", seed=0)) == 2
    assert minibatch_schedule([], minibatches=2, order="in_order", seed=0) == []


def test_units_keep_chunks_whole_and_passes_respect_the_micro_batch():
    ids = torch.tensor([[0, 0, 1, 1, 1], [0, 1, 2, -1, -1], [0, 0, 0, 0, 0]])
    units = sample_units(ids, [0, 1, 2])
    assert units == [(0, [0, 1]), (0, [2, 3, 4]), (1, [0]), (1, [1]), (1, [2]), (2, [0, 1, 2, 3, 4])]
    assert sample_units(ids, [1]) == [(1, [0]), (1, [1]), (1, [2])]
    passes = pack_units(units, 4, key=lambda r, c: (r, c))
    # 2 + 3 > 4 -> new pass; 3 + 1 = 4 fits; next 1 starts a pass, + 1 fits; the unit of 5 alone
    assert [[len(c) for _, c in p] for p in passes] == [[2], [3, 1], [1, 1], [5]]
    # shared inputs (E-GRPO): members of one column cost one model input together
    shared = pack_units([(r, [0]) for r in range(6)], 2, key=lambda r, c: r // 3)
    assert [[r for r, _ in p] for p in shared] == [[0, 1, 2, 3, 4, 5]]


def test_epochs_repeat_the_batch_with_a_fresh_shuffle_each_pass():
    # Flow-GRPO's num_inner_epochs: E passes, each a new permutation of every trained sample
    groups = [g for g in range(2) for _ in range(4)]
    one = minibatch_schedule(groups, minibatches=2, order="shuffled", seed=3)
    two = minibatch_schedule(groups, minibatches=2, order="shuffled", seed=3, epochs=2)
    assert len(two) == 4 and two[:2] == one  # the first pass is the single-epoch schedule
    assert sorted(two[2] + two[3]) == list(range(8)) and two[2:] != one  # a second, reshuffled pass
    # the deterministic orders repeat: E-GRPO's columns twice, in column order
    columns = [0, 0, 1, 1]
    assert minibatch_schedule([0] * 4, minibatches=1, order="column", seed=0, columns=columns, epochs=2) == [
        [0, 1],
        [2, 3],
        [0, 1],
        [2, 3],
    ]
    with pytest.raises(ValueError, match="epochs"):
        minibatch_schedule(groups, minibatches=1, order="shuffled", seed=0, epochs=0)
