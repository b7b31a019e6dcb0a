"""The rollout side as it runs on a GPU, checked without one: the sampler with the policy on the
meta device (tests/fixtures/meta.py: cross-device operands fail as on CUDA; host reads of computed
values are zeros), the prompt cache kept on the host, the VAE decoded in bounded batches."""

import numpy as np
import pytest
import torch

from rollout.config import ModelConfig
from rollout.models import common
from rollout.plan import entropy_window_plan, sde_plan
from rollout.policy import policy_from_config
from rollout.sampler import generate, sample_ode
from tests.fixtures.meta import MetaHost

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("kind", ["flux", "sd3"])
def test_sampler_with_the_policy_on_a_device(kind, flux_dir, sd3_dir):
    path, options = (flux_dir, {}) if kind == "flux" else (sd3_dir, {"guidance_scale": 4.5})  # SD3: true CFG
    policy = policy_from_config(
        ModelConfig(path=str(path), resolution=32, dtype="bfloat16", **options), device="meta"
    )
    plan = sde_plan(4, noise_level=0.7, sde_kind="flow", train_last=True)
    branch = entropy_window_plan(8, noise_level=0.7, sde_kind="flow", active_fraction=0.5)
    m = branch.members_per_group(2)
    with MetaHost():
        images, traj = generate(
            policy, ["a red circle", "a blue square"], [0, 1], plan, [1, 2], [3, 4], 0, micro_batch=1
        )
        b_images, b_traj = generate(
            policy, ["a"] * m, list(range(m)), branch, [1] * m, list(range(m)), 0, micro_batch=4, group_size=2
        )
        ode = sample_ode(policy, ["a", "b", "c"], [1, 2, 3], num_steps=3, micro_batch=2)
    latent = policy.latent_shape
    assert images.shape == (2, 32, 32, 3) and images.dtype == np.uint8 and ode.shape == (3, 32, 32, 3)
    assert traj.latents.shape == (2, 5, *latent) and traj.latents.device.type == "cpu"  # stored on the host
    assert traj.latents.dtype == torch.float32 and traj.log_probs.shape == (2, 4)
    assert b_images.shape[0] == m and b_traj.latents.shape == (m, branch.num_transitions + 1, *latent)
    assert {p.device.type for p in policy.parameters()} == {"meta"}


def test_prompt_cache_is_a_bounded_lru_on_the_host_in_the_encoders_dtype(flux_dir):
    model = ModelConfig(path=str(flux_dir), resolution=32, dtype="bfloat16", max_sequence_length=16)
    policy, encoder = policy_from_config(model, device="meta"), policy_from_config(model).text_encoder
    calls = []
    policy._modules.pop("text_encoder")  # a counting stand-in: the real encoder, run on the CPU
    policy.text_encoder = lambda prompts: calls.append(list(prompts)) or encoder(prompts)
    one = 16 * 32 * 2 + 32 * 2  # bytes a prompt: prompt_embeds [16, 32] + pooled [32], bf16
    policy.cache_bytes = 3 * one  # room for three prompts
    cond = policy.encode(["a", "b", "a"])
    assert cond["prompt_embeds"].shape == (3, 16, 32) and cond["prompt_embeds"].device.type == "meta"
    assert cond["prompt_embeds"].dtype == torch.bfloat16  # the encoder's dtype: no float32 copies
    assert {t.device.type for v in policy._cache.values() for t in v.values()} == {"cpu"}
    policy.encode(["c", "a"])  # a: a hit, now recent; c: new, most recent
    policy.encode(["d"])  # over budget: b, the least recently used, goes
    assert list(policy._cache) == ["a", "c", "d"] and policy._cache_used == 3 * one
    policy.encode(["b", "a"])
    assert calls == [["a", "b"], ["c"], ["d"], ["b"]]  # each miss encoded once, hits never


def test_vae_decode_runs_in_bounded_batches_and_equals_one_call(flux_dir, monkeypatch):
    # FLUX's VAE (128 channels at full resolution): 8 images a call at 512², 4 at 720², 2 at 1024²
    real = type("VAE", (), {"config": type("C", (), {"block_out_channels": (128, 256, 512, 512)})})
    assert [common.decode_batch(real, s, s) for s in (512, 720, 1024)] == [8, 4, 2]
    policy = policy_from_config(ModelConfig(path=str(flux_dir), resolution=32))
    x0 = torch.randn(5, *policy.latent_shape, generator=torch.Generator().manual_seed(0))
    whole = policy.decode(x0)  # 5 · 8 · 32 · 32 elements of the widest activation < DECODE_ELEMENTS: one call
    calls = []
    decode = policy.vae.decode
    monkeypatch.setattr(policy.vae, "decode", lambda z, **kw: calls.append(len(z)) or decode(z, **kw))
    monkeypatch.setattr(common, "DECODE_ELEMENTS", 2 * 8 * 32 * 32)  # room for 2 images of 32² at 8 channels
    assert common.decode_batch(policy.vae, 32, 32) == 2
    batched = policy.decode(x0)
    assert calls == [2, 2, 1] and np.array_equal(batched, whole)


@pytest.mark.parametrize("kind", ["flux", "sd3"])
def test_a_policy_turns_off_cudnn_attention_for_its_process(kind, flux_dir, sd3_dir):
    # On an H200, cuDNN's fused attention backward over FLUX's 720² sequence hit an illegal memory
    # access (docs/gpu.md); the switch is process-wide so checkpointing's recompute obeys it too.
    path = flux_dir if kind == "flux" else sd3_dir
    torch.backends.cuda.enable_cudnn_sdp(True)
    try:
        policy_from_config(ModelConfig(path=str(path), resolution=32), device="meta")
        assert not torch.backends.cuda.cudnn_sdp_enabled()
        assert torch.backends.cuda.flash_sdp_enabled() and torch.backends.cuda.mem_efficient_sdp_enabled()
    finally:
        torch.backends.cuda.enable_cudnn_sdp(True)
