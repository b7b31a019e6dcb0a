"""A Trajectory crosses the object store as numpy buffers: equal after the trip, and mapped, not copied."""

import pickle

import pytest
import torch

from rollout.trajectory import Trajectory


def trajectory(b=2, n=4, latent=(8, 4)):
    g = torch.Generator().manual_seed(0)
    return Trajectory(
        prompts=[f"p{i}" for i in range(b)],
        columns=torch.arange(b),
        latents=torch.randn(b, n + 1, *latent, generator=g),
        log_probs=torch.randn(b, n, generator=g),
        sigmas=torch.linspace(1, 0, n + 1),
        train_steps=torch.tensor([[0, 2]] * b),
        train_ends=torch.tensor([[1, 3]] * b),
        chunk_ids=torch.tensor([[0, 1]] * b),
        initial_seeds=torch.tensor([7] * b),
        noise_seeds=torch.arange(b) + 100,
        policy_version=3,
        noise_level=0.7,
        sde_kind="flow",
        shared_inputs=True,
    )


def assert_same(a: Trajectory, b: Trajectory):
    for name in (
        "columns",
        "latents",
        "log_probs",
        "sigmas",
        "train_steps",
        "train_ends",
        "chunk_ids",
        "initial_seeds",
        "noise_seeds",
    ):
        x, y = getattr(a, name), getattr(b, name)
        assert isinstance(y, torch.Tensor) and y.dtype == x.dtype and torch.equal(x, y), name
    assert (a.prompts, a.policy_version, a.noise_level, a.sde_kind, a.shared_inputs) == (
        b.prompts,
        b.policy_version,
        b.noise_level,
        b.sde_kind,
        b.shared_inputs,
    )


def test_pickle_round_trip_keeps_every_field():
    t = trajectory()
    back = pickle.loads(pickle.dumps(t, protocol=5))
    assert_same(t, back)
    assert_same(t.select([1]), back.select([1]))  # select copies: usable on read-only buffers


@pytest.mark.usefixtures("local_ray")
def test_object_store_maps_the_latents_instead_of_copying():
    import ray

    t = trajectory(latent=(256, 64))  # 40 KiB a latent: large enough for the shared-memory store
    ref = ray.put(t)
    a, b = ray.get(ref), ray.get(ref)
    assert_same(t, a)
    # two reads of one object in one process see the same shared-memory buffer: zero-copy
    assert a.latents.data_ptr() == b.latents.data_ptr()
    del a, b, ref
