from collections import Counter

import numpy as np
import pytest
import torch

from learner.chunking import (
    ChunkSelector,
    adaptive_chunks,
    chunk_ids,
    chunk_sampling_probs,
    train_count,
    trajectory_l1_rel,
    uniform_chunks,
)


def test_uniform_chunks_put_the_remainder_last():
    assert uniform_chunks(16, 5) == [5, 5, 5, 1]  # ALGORITHMS.md §1.2(b)
    assert uniform_chunks(16, 4) == [4, 4, 4, 4]
    assert uniform_chunks(11, 4) == [4, 4, 3]
    assert uniform_chunks(3, 5) == [3]


def test_adaptive_chunks_worked_examples():
    # ALGORITHMS.md §1.2(c), stop size 5
    # [5,4,3,2,1,2,3,4]: gradient [-1,-1,-1,-1,0,1,1,1] -> signs ----0+++ -> [4, 1, 3]
    assert adaptive_chunks([5, 4, 3, 2, 1, 2, 3, 4]) == [[4, 1, 3]]
    # 1/(k+1): first order all negative -> halves of 6 -> second order all positive -> halves of 3
    assert adaptive_chunks([1 / (k + 1) for k in range(12)]) == [[3, 3, 3, 3]]
    assert adaptive_chunks([1 / (k + 1) for k in range(10)]) == [[5, 5]]
    curve = [
        0.30,
        0.22,
        0.15,
        0.11,
        0.09,
        0.08,
        0.075,
        0.07,
        0.068,
        0.07,
        0.075,
        0.08,
        0.09,
        0.10,
        0.12,
        0.15,
    ]
    assert adaptive_chunks(curve) == [[4, 4, 1, 3, 4]]
    assert adaptive_chunks([0.5] * 7) == [[3, 4]]  # one run of zeros -> halves 3, 4
    assert adaptive_chunks([3.0, 1.0, 2.0]) == [[3]]
    # [B, n]: one list per trajectory
    assert adaptive_chunks(torch.tensor([[5, 4, 3, 2, 1, 2, 3, 4], [1.0] * 8])) == [[4, 1, 3], [4, 4]]


def test_adaptive_chunks_do_not_depend_on_the_input_dtype():
    # The curve has exactly flat gradients (e.g. the second-order gradient at step 7: (0.07 − 0.075)
    # − (0.07 − 0.08)/2 = 0), whose sign is float rounding. Written as float64 literals that rounding
    # gives [4, 4, 1, 3, 4]; a float32 tensor of the same decimals is widened through its shortest
    # decimal form, so it splits the same (plain widening would give [3, 4, 1, 1, 1, 1, 3, 2]).
    curve = [
        0.30,
        0.22,
        0.15,
        0.11,
        0.09,
        0.08,
        0.075,
        0.07,
        0.068,
        0.07,
        0.075,
        0.08,
        0.09,
        0.10,
        0.12,
        0.15,
    ]
    for values in (
        curve,
        torch.tensor(curve),
        torch.tensor(curve, dtype=torch.float64),
        np.array(curve, dtype=np.float32),
    ):
        assert adaptive_chunks(values) == [[4, 4, 1, 3, 4]], type(values)
    harmonic = [1 / (k + 1) for k in range(12)]
    assert adaptive_chunks(torch.tensor(harmonic)) == adaptive_chunks(harmonic) == [[3, 3, 3, 3]]
    assert adaptive_chunks(torch.tensor([[5, 4, 3, 2, 1, 2, 3, 4]], dtype=torch.int64)) == [[4, 1, 3]]


def test_adaptive_stop_size_three_by_hand():
    # [5,4,3,2,1,2,3,4] stop 3: runs [4, 1, 3]; the run of 4 (values 5,4,3,2) has second-order
    # gradient of its first-order gradient [-1,-1,-1,-1] = [0,0,0,0]: one run -> halves [2, 2]
    assert adaptive_chunks([5, 4, 3, 2, 1, 2, 3, 4], stop_size=3) == [[2, 2, 1, 3]]


def test_trajectory_l1_rel_by_hand():
    # trajectory 0: x0 = [1, 1], x1 = [2, 0], x2 = [2, 0]: mean|Δ| = 1 / mean|x0| = 1 -> 1; then 0 / 1 = 0
    # trajectory 1: x0 = [2, 0], x1 = [1, 0], x2 = [1, 1]: 0.5 / 1 = 0.5; 0.5 / 0.5 = 1
    latents = torch.tensor([[[1.0, 1.0], [2.0, 0.0], [2.0, 0.0]], [[2.0, 0.0], [1.0, 0.0], [1.0, 1.0]]])
    out = trajectory_l1_rel(latents)
    assert out.shape == (2, 2) and out.dtype == torch.float32
    torch.testing.assert_close(out, torch.tensor([[1.0, 0.0], [0.5, 1.0]]))
    # latents [B, N+1, C, H]: means over every element
    assert trajectory_l1_rel(torch.zeros(3, 5, 2, 4)).shape == (3, 4)


def test_chunk_sampling_probs_by_hand():
    # l = [0.4, 0.2, 0.1, 0.1, 0.1, 0.1], sizes [2, 4]: chunk means 0.3, 0.1 (+1e-8)
    l1 = torch.tensor([[0.4, 0.2, 0.1, 0.1, 0.1, 0.1]])
    torch.testing.assert_close(chunk_sampling_probs(l1, [2, 4]), torch.tensor([[0.75, 0.25]]))
    # softmax(0.3, 0.1) = [e^0.2, 1] / (1 + e^0.2) = [0.549834, 0.450166]
    torch.testing.assert_close(
        chunk_sampling_probs(l1, [2, 4], "softmax"), torch.tensor([[0.549834, 0.450166]])
    )
    # one size list per row, padded with 0: row 1 has one chunk -> [1, 0]
    two = torch.tensor([[0.4, 0.2, 0.1, 0.1, 0.1, 0.1], [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]])
    torch.testing.assert_close(
        chunk_sampling_probs(two, [[2, 4], [6, 0]]), torch.tensor([[0.75, 0.25], [1.0, 0.0]])
    )
    with pytest.raises(ValueError, match="sum to 5"):
        chunk_sampling_probs(l1, [2, 3])


def test_train_count_is_at_least_one():
    assert train_count(4, 0.5) == 2  # GCPO: 2 of [2, 3, 4, 7]
    assert train_count(15, 0.6) == 9  # DanceGRPO: int(15·0.6) steps
    assert train_count(3, 0.5) == 1 and train_count(1, 0.5) == 1  # GCPO's release would train none
    assert train_count(11, 1.0) == 11


def test_chunk_ids_and_errors():
    assert chunk_ids([2, 3, 4, 7]).tolist() == [0] * 2 + [1] * 3 + [2] * 4 + [3] * 7
    with pytest.raises(ValueError, match=">= 1"):
        chunk_ids([2, 0])


def latents_with(l1_rows):
    """Trajectories [B, n+1, 1] whose L1_rel per step is l1_rows (x_{k+1} = x_k·(1 + l))."""
    out = []
    for row in l1_rows:
        x = [1.0]
        for v in row:
            x.append(x[-1] * (1 + v))
        out.append(x)
    return torch.tensor(out)[:, :, None]


def test_selector_trains_half_of_the_fixed_chunks_per_trajectory():
    sel = ChunkSelector(mode="fixed", sizes=(2, 3, 4, 7), fraction=0.5)
    latents = torch.ones(200, 18, 3)  # 17 steps: 16 trainable + the last
    trainable = [True] * 16 + [False]
    steps, ids = sel(latents, trainable, list(range(200)))
    assert steps.shape == ids.shape == (200, 16)
    pairs = Counter()
    for row_steps, row_ids in zip(steps.tolist(), ids.tolist()):
        chunks = sorted({j for j in row_ids if j >= 0})
        assert len(chunks) == 2  # int(4·0.5) whole chunks
        bounds = {0: [0, 1], 1: [2, 3, 4], 2: [5, 6, 7, 8], 3: list(range(9, 16))}
        assert [s for s in row_steps if s >= 0] == sorted(bounds[chunks[0]] + bounds[chunks[1]])
        assert row_steps.count(-1) == row_ids.count(-1) == 16 - len(bounds[chunks[0]] + bounds[chunks[1]])
        pairs[tuple(chunks)] += 1
    assert len(pairs) == 6 and min(pairs.values()) > 15  # every pair drawn, ~33 each
    again, _ = sel(latents, trainable, list(range(200)))
    assert torch.equal(again, steps)  # the seeds decide


def test_selector_adaptive_chunks_each_trajectory_from_its_own_l1():
    sel = ChunkSelector(mode="adaptive", fraction=1.0)
    latents = latents_with([[5, 4, 3, 2, 1, 2, 3, 4, 0.5], [1, 1, 1, 1, 1, 1, 1, 1, 0.5]])
    steps, ids = sel(latents, [True] * 8 + [False], [0, 1])
    assert steps.tolist() == [list(range(8))] * 2  # fraction 1: every chunk
    # the ratio step / x_k is exactly l, so the chunks are adaptive_chunks of the rows: [4, 1, 3] and [4, 4]
    assert ids.tolist() == [[0, 0, 0, 0, 1, 2, 2, 2], [0, 0, 0, 0, 1, 1, 1, 1]]


def test_weighted_selection_follows_the_normalized_probabilities():
    # chunks [2, 2] with mean L1_rel 0.3 and 0.1 -> p = 0.75, 0.25; one chunk each (int(2·0.5))
    sel = ChunkSelector(mode="fixed", sizes=(2, 2), fraction=0.5, weighting="normalized")
    latents = latents_with([[0.3, 0.3, 0.1, 0.1]] * 1000)
    _, ids = sel(latents, [True] * 4, list(range(1000)))
    first = (ids[:, 0] == 0).float().mean().item()
    assert first == pytest.approx(0.75, abs=0.05)  # binomial std 0.014
    with pytest.raises(ValueError, match="sum to 3 but the plan trains 4"):
        ChunkSelector(mode="fixed", sizes=(1, 2)).layouts(torch.zeros(1, 4))


def test_scaled_chunks_move_the_boundaries():
    from learner.chunking import scaled_chunks

    assert scaled_chunks([2, 3, 4, 7], 16) == [2, 3, 4, 7]  # GCPO's list on its own 16 transitions
    # on 11: boundaries 2·11/16 = 1.375 -> 1, 5·11/16 = 3.4375 -> 3, 9·11/16 = 6.1875 -> 6, 11
    assert scaled_chunks([2, 3, 4, 7], 11) == [1, 2, 3, 5]
    # on 4: 0.5 -> 1 (halves up), 1.25 -> 1 (empty: dropped), 2.25 -> 2, 4
    assert scaled_chunks([2, 3, 4, 7], 4) == [1, 1, 2]
    sel = ChunkSelector(mode="scaled", sizes=(2, 3, 4, 7))
    assert sel.layouts(torch.zeros(2, 11)) == [[1, 2, 3, 5]] * 2
