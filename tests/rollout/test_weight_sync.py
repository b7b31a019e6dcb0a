"""Bucketing of the broadcast weight sync, and one broadcast over a real gloo group (two threads)."""

import threading

import pytest
import torch

from learner.engine import free_port
from rollout.weight_sync import TensorSpec, WeightGroup, pack, plan_buckets, tensor_specs, unpack


def test_buckets_by_hand():
    specs = [TensorSpec("a", (10,), "float32"),  # 40 bytes
             TensorSpec("b", (4, 5), "float32"),  # 80 bytes
             TensorSpec("c", (5,), "float32"),  # 20 bytes
             TensorSpec("d", (8,), "bfloat16")]  # 16 bytes
    # bucket of 100 bytes: a + b = 120 > 100 so a travels alone; b + c = 100 fits; d has its own dtype
    plan = plan_buckets(specs, 100)
    assert [[s.name for s in bucket] for bucket in plan] == [["d"], ["a"], ["b", "c"]]


def test_every_tensor_in_exactly_one_bucket_of_one_dtype_within_the_limit():
    g = torch.Generator().manual_seed(0)
    state = {f"layer{i}.{kind}": torch.zeros(int(torch.randint(1, 300, (1,), generator=g))).to(dtype)
             for i in range(40) for kind, dtype in (("weight", torch.float32), ("lora_A", torch.bfloat16))}
    state["huge"] = torch.zeros(5000)  # 20 kB > the limit: alone
    limit = 1000
    plan = plan_buckets(tensor_specs(state), limit)
    names = [s.name for bucket in plan for s in bucket]
    assert sorted(names) == sorted(state)  # each once
    for bucket in plan:
        assert len({s.dtype for s in bucket}) == 1
        assert sum(s.nbytes for s in bucket) <= limit or len(bucket) == 1
    assert [["huge"]] == [[s.name for s in b] for b in plan if b[0].name == "huge"]


def test_pack_unpack_round_trip_and_a_wrong_plan_is_an_error():
    state = {"w": torch.randn(3, 4), "b": torch.randn(4)}
    [bucket] = plan_buckets(tensor_specs(state), 1 << 20)
    flat = pack(state, bucket)  # [16]
    assert flat.shape == (16,)
    back = unpack(flat, bucket)
    assert all(torch.equal(back[k], state[k]) for k in state)
    with pytest.raises(ValueError, match="bucket of 17 elements"):
        unpack(torch.zeros(17), bucket)


def test_gloo_broadcast_from_rank_0_in_small_buckets():
    state = {"a.weight": torch.randn(30, 20), "a.bias": torch.randn(20), "lora": torch.randn(7, 3).bfloat16()}
    plan = plan_buckets(tensor_specs(state), 256)  # [lora] (bf16), [a.bias], [a.weight] (2400 B, alone)
    assert len(plan) == 3
    port, got = free_port(), {}

    def receiver():
        group = WeightGroup("127.0.0.1", port, 1, 2, "gloo", timeout_s=60)
        got.update(group.receive(plan))
        group.close()

    thread = threading.Thread(target=receiver)
    thread.start()
    sender = WeightGroup("127.0.0.1", port, 0, 2, "gloo", timeout_s=60)
    sender.send(state, plan)
    thread.join(60)
    sender.close()
    assert set(got) == set(state)
    for k in state:
        assert got[k].dtype == state[k].dtype and torch.equal(got[k], state[k])
