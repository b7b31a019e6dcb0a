import itertools

import pytest
import torch

from learner.chunking import chunk_ids, dynamics_chunks, relative_l1


def test_relative_l1_by_hand():
    # x0 = [1, 1], x1 = [2, 0], x2 = [2, 0]: |x1-x0|₁/|x0|₁ = 2/2 = 1, |x2-x1|₁/|x1|₁ = 0
    # second sample: x0 = [2, 0], x1 = [1, 0], x2 = [1, 1] -> 1/2, 1/1 ; mean over B -> [0.75, 0.5]
    latents = torch.tensor([[[1.0, 1.0], [2.0, 0.0], [2.0, 0.0]], [[2.0, 0.0], [1.0, 0.0], [1.0, 1.0]]])
    torch.testing.assert_close(relative_l1(latents), torch.tensor([0.75, 0.5]))


def test_dynamics_chunks_finds_the_zero_cost_split():
    curve = [5, 5, 5, 1, 1, 1, 1, 0, 0]
    assert dynamics_chunks(curve, 3) == [3, 4, 2]
    assert dynamics_chunks(curve, 1) == [9]
    assert dynamics_chunks(curve, 9) == [1] * 9


def brute_force(curve, k):
    n = len(curve)
    best, best_sizes = float("inf"), None
    for cuts in itertools.combinations(range(1, n), k - 1):
        bounds = (0, *cuts, n)
        cost = 0.0
        for a, b in zip(bounds[:-1], bounds[1:]):
            seg = curve[a:b]
            m = sum(seg) / len(seg)
            cost += sum((v - m) ** 2 for v in seg)
        if cost < best - 1e-12:
            best, best_sizes = cost, [b - a for a, b in zip(bounds[:-1], bounds[1:])]
    return best_sizes


@pytest.mark.parametrize("seed", range(5))
def test_dynamics_chunks_matches_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    curve = torch.rand(10, generator=g).tolist()
    for k in (2, 3, 4):
        sizes = dynamics_chunks(curve, k)
        assert sum(sizes) == 10 and len(sizes) == k
        assert sizes == brute_force(curve, k)


def test_chunk_ids_and_errors():
    assert chunk_ids([2, 3, 4, 7]).tolist() == [0] * 2 + [1] * 3 + [2] * 4 + [3] * 7
    with pytest.raises(ValueError, match="num_chunks"):
        dynamics_chunks([1.0, 2.0], 3)


def test_column_blocks_keep_chunks_whole():
    from learner.chunking import column_blocks

    # Chunk-GRPO: the same chunks in every row -> one block per chunk
    ids = chunk_ids([2, 3, 1]).expand(4, -1)
    assert column_blocks(ids) == [[0, 1], [2, 3, 4], [5]]
    # DanceGRPO: size-1 chunks -> one block per column
    assert column_blocks(torch.arange(5).expand(3, -1)) == [[0], [1], [2], [3], [4]]
    # rows disagree: row 1 joins columns 1 and 2 -> they share a block
    ids = torch.tensor([[0, 1, 2, 3], [0, 1, 1, 2]])
    assert column_blocks(ids) == [[0], [1, 2], [3]]
