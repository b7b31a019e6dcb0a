"""Bucketing of the broadcast weight sync, and one broadcast over a real gloo group (two threads)."""

import threading

import pytest
import torch

from learner.engine import free_port
from rollout.weight_sync import TensorSpec, WeightGroup, pack, plan_buckets, tensor_specs, unpack


def test_buckets_by_hand():
    specs = [
        TensorSpec("a", (10,), "float32"),  # 40 bytes
        TensorSpec("b", (4, 5), "float32"),  # 80 bytes
        TensorSpec("c", (5,), "float32"),  # 20 bytes
        TensorSpec("d", (8,), "bfloat16"),
    ]  # 16 bytes
    # bucket of 100 bytes: a + b = 120 > 100 so a travels alone; b + c = 100 fits; d has its own dtype
    plan = plan_buckets(specs, 100)
    assert [[s.name for s in bucket] for bucket in plan] == [["d"], ["a"], ["b", "c"]]


def test_every_tensor_in_exactly_one_bucket_of_one_dtype_within_the_limit():
    g = torch.Generator().manual_seed(0)
    state = {
        f"layer{i}.{kind}": torch.zeros(int(torch.randint(1, 300, (1,), generator=g))).to(dtype)
        for i in range(40)
        for kind, dtype in (("weight", torch.float32), ("lora_A", torch.bfloat16))
    }
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


# -- the sync's integrity check (rollout.weight_sync.state_checksum) ----------------------------


def test_checksum_catches_any_single_changed_element_of_a_large_tensor():
    """S = Σ u_i mod 2^64 over the elements' bit patterns changes with any single element (a
    deterministic guarantee, not a probability): here the smallest possible change, one ulp
    (bit pattern + 1), at random positions of a tensor that spans two 2^22-element chunks."""
    from rollout.weight_sync import tensor_digest

    g = torch.Generator().manual_seed(0)
    for dtype, word in ((torch.bfloat16, torch.int16), (torch.float32, torch.int32)):
        t = torch.randn(5_000_000, generator=g).to(dtype)
        base = tensor_digest(t)
        positions = torch.randint(0, t.numel(), (6,), generator=g).tolist() + [
            0,
            (1 << 22) - 1,
            1 << 22,
            t.numel() - 1,
        ]
        for i in positions:
            u = t.clone()
            u.view(word)[i] += 1  # one ulp
            diff = tensor_digest(u) - base
            assert diff[0].item() == 1 and diff[1].item() != 0, (dtype, i)


def test_checksum_catches_swaps_and_is_order_free():
    from rollout.weight_sync import Checksum, state_checksum, tensor_digest

    t = torch.randn(3, 1000).bfloat16()
    swapped = t.clone()
    swapped[0, [10, 500]] = t[0, [500, 10]]  # S unchanged; W catches it
    assert (
        tensor_digest(swapped)[0] == tensor_digest(t)[0] and tensor_digest(swapped)[1] != tensor_digest(t)[1]
    )
    state = {"a": t, "b": torch.arange(7.0), "c": torch.zeros(0)}
    reverse = Checksum()
    for k in reversed(list(state)):
        reverse.update(k, state[k])
    assert reverse.hexdigest() == state_checksum(state)  # names sorted: update order does not matter
    assert state_checksum({**state, "b": torch.arange(7.0).reshape(7, 1)}) != state_checksum(
        state
    )  # shape counts
    assert state_checksum({**state, "a": t.float()}) != state_checksum(state)  # so does dtype
    assert state_checksum({"a": t.T}) == state_checksum({"a": t.T.contiguous()})  # layout does not


def test_broadcast_into_existing_weights_holds_one_bucket_at_a_time():
    """receive(plan, into=params) copies bucket by bucket into the receiver's own tensors: after
    the broadcast they equal the sender's and no tensor of the broadcast is kept."""
    state = {f"w{i}": torch.randn(64, 64) for i in range(6)}  # 16 KiB each
    plan = plan_buckets(tensor_specs(state), 40_000)  # two tensors a bucket: 3 buckets
    assert [len(b) for b in plan] == [2, 2, 2]
    params = {k: torch.zeros_like(v) for k, v in state.items()}
    ids = {k: v.data_ptr() for k, v in params.items()}
    port = free_port()

    def receiver():
        group = WeightGroup("127.0.0.1", port, 1, 2, "gloo", timeout_s=60)
        group.receive(plan, into=params)
        group.close()

    thread = threading.Thread(target=receiver)
    thread.start()
    sender = WeightGroup("127.0.0.1", port, 0, 2, "gloo", timeout_s=60)
    for bucket in plan:
        sender.send_bucket(pack(state, bucket))
    thread.join(60)
    sender.close()
    assert all(torch.equal(params[k], state[k]) and params[k].data_ptr() == ids[k] for k in state)
    with pytest.raises(KeyError, match="lacks"):
        WeightGroup.receive(None, plan, into={})


def test_a_received_bucket_is_freed_once_copied():
    """The receiver copies a bucket into its weights and drops it before the next one: no view of
    the buffer outlives the copy (a leftover view would keep a second bucket alive at the next)."""
    import weakref

    from rollout.weight_sync import _copy_into

    state = {"a": torch.randn(5, 3), "b": torch.randn(7)}
    [bucket] = plan_buckets(tensor_specs(state), 1 << 20)
    params = {k: torch.zeros_like(v) for k, v in state.items()}
    flat = pack(state, bucket)
    alive = weakref.ref(flat)
    _copy_into(params, flat, bucket)
    del flat
    assert alive() is None
    assert all(torch.equal(params[k], state[k]) for k in state)


def test_sync_with_both_policies_on_a_device(flux_dir):
    """The broadcast path with sender and receiver weights on the meta device (tests/fixtures/meta.py):
    packed on the device, moved to the group's device (CPU for gloo), copied into the receiver's
    device tensors; both checksums are computed where the weights live."""
    from tests.fixtures.meta import MetaHost
    from rollout.config import ModelConfig
    from rollout.policy import policy_from_config

    model = ModelConfig(path=str(flux_dir), resolution=32, lora={"rank": 4})
    sender_policy, receiver_policy = (policy_from_config(model, device="meta") for _ in range(2))
    state = sender_policy.trainable_tensors()
    plan = plan_buckets(tensor_specs(state), 4096)
    assert len(plan) > 1
    port, got = free_port(), {}

    def receiver():
        with MetaHost():
            group = WeightGroup("127.0.0.1", port, 1, 2, "gloo", timeout_s=60)
            group.receive(plan, into=receiver_policy.trainable_tensors())
            got["checksum"] = receiver_policy.checksum()
            group.close()

    thread = threading.Thread(target=receiver)
    thread.start()
    with MetaHost():
        sender = WeightGroup("127.0.0.1", port, 0, 2, "gloo", timeout_s=60)
        sender.send(state, plan)
        checksum = sender_policy.checksum()
        sender.close()
    thread.join(60)
    assert (
        got["checksum"] == checksum
    )  # (meta weights read as zeros: equal by construction; placement is the test)
    assert {p.device.type for p in receiver_policy.parameters()} == {"meta"}


def test_device_and_host_digests_are_the_same_integers():
    """GPUs run the torch-op digest, the CPU the numpy one: both give the same (S, W), here checked
    on CPU tensors spanning several 2^22-element chunks."""
    from rollout.weight_sync import _WORDS, _digest_device, tensor_digest

    for t in (
        torch.randn(9_000_000).bfloat16(),
        torch.randn(5_000_000),
        torch.tensor([-0.0, 1.5, -2.0]).half(),
    ):
        words = t.reshape(-1).view(_WORDS[t.element_size()])
        assert _digest_device(words).tolist() == tensor_digest(t).tolist()
