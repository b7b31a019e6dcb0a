"""FLUX.1 and SD3.5 policies on tiny random pipelines in the official diffusers layout.

The oracle is diffusers' own pipeline: our ODE sampler, velocity and decode must give the
images FluxPipeline / StableDiffusion3Pipeline give for the same noise, prompts and schedule.
"""

import json

import numpy as np
import pytest
import torch

from rollout.config import ModelConfig, RolloutConfig, schedule_shift
from rollout.models.flux import pack, unpack
from rollout.policy import load_policy
from rollout.sampler import noise_from_seeds, sample_ode
from rollout.sde import flux_resolution_shift

PROMPTS = ["a red circle at the top left on a blue background", "a cyan square at the center"]


def policy_of(path, **options):
    options.setdefault("resolution", 32)
    return load_policy(str(path), options=ModelConfig(path=str(path), **options))


@pytest.mark.parametrize("kind", ["flux", "sd3"])
def test_ode_samples_match_the_diffusers_pipeline(kind, flux_dir, sd3_dir):
    from diffusers import FluxPipeline, StableDiffusion3Pipeline

    path, steps = (flux_dir, 3) if kind == "flux" else (sd3_dir, 3)
    policy = policy_of(path, finetune="full")
    seeds = [11, 12]
    noise = noise_from_seeds(seeds, policy.latent_shape)  # [B, *latent]
    if kind == "flux":
        # FluxPipeline: sigmas linspace(1, 1/N, N) shifted by exp(μ(seq_len)), then 0 — our schedule.
        shift = flux_resolution_shift(policy.latent_shape[0])
        pipe = FluxPipeline.from_pretrained(str(path))
        out = pipe(
            PROMPTS,
            height=32,
            width=32,
            num_inference_steps=steps,
            guidance_scale=3.5,
            latents=noise,
            output_type="np",
        ).images
    else:
        shift = 3.0  # the scheduler config's static shift, applied to the sigmas we pass
        pipe = StableDiffusion3Pipeline.from_pretrained(str(path))
        out = pipe(
            PROMPTS,
            height=32,
            width=32,
            num_inference_steps=steps,
            guidance_scale=4.5,
            sigmas=np.linspace(1.0, 1 / steps, steps).tolist(),
            latents=noise,
            output_type="np",
        ).images
    ours = sample_ode(policy, PROMPTS, seeds, num_steps=steps, shift=shift)
    reference = (out * 255).round().astype(np.uint8)  # diffusers' numpy_to_pil quantisation
    assert ours.shape == reference.shape == (2, 32, 32, 3)
    assert np.abs(ours.astype(int) - reference.astype(int)).max() <= 1
    assert (ours == reference).mean() > 0.99


def test_flux_layout_shapes_guidance_and_mixed_sigmas(flux_dir):
    policy = policy_of(flux_dir)
    # 32 px / 2× VAE = 16² latent cells, packed 2×2 -> 64 tokens of 4 channels × 4
    assert policy.latent_shape == (64, 16) and tuple(policy.img_ids.shape) == (64, 3)
    assert policy.img_ids[1].tolist() == [0, 0, 1] and policy.img_ids[8].tolist() == [0, 1, 0]
    cond = policy.encode(PROMPTS)
    assert cond["prompt_embeds"].shape == (2, 512, 32) and cond["pooled"].shape == (2, 32)
    assert policy_of(flux_dir, max_sequence_length=64).encode(PROMPTS)["prompt_embeds"].shape == (2, 64, 32)
    x = torch.randn(2, *policy.latent_shape)
    sigma = torch.tensor([0.9, 0.3])
    v = policy.velocity(x, sigma, cond)
    assert v.dtype == torch.float32 and v.shape == x.shape
    # the learner mixes sigmas in one batch: row b must equal a call at sigma[b] alone
    for b in range(2):
        torch.testing.assert_close(
            v[b : b + 1],
            policy.velocity(x[b : b + 1], float(sigma[b]), cond.select([b])),
            rtol=1e-4,
            atol=1e-5,
        )
    # the guidance embedding is an input of FLUX.1-dev
    assert not torch.allclose(v, policy_of(flux_dir, guidance_scale=1.0).velocity(x, sigma, cond))


def test_pack_unpack_round_trip():
    z = torch.randn(2, 4, 6, 8)  # [B, C, h, w]
    tokens = pack(z)
    assert tokens.shape == (2, 12, 16)
    # token 1 is the 2×2 patch at rows 0-1, cols 2-3, channels outermost
    assert torch.equal(tokens[0, 1].reshape(4, 2, 2), z[0, :, 0:2, 2:4])
    assert torch.equal(unpack(tokens, 6, 8), z)


def test_sd3_true_cfg_is_the_velocity(sd3_dir):
    policy = policy_of(sd3_dir, guidance_scale=4.5)
    plain = policy_of(sd3_dir, guidance_scale=1.0)  # CFG off: the conditional branch alone
    assert policy.latent_shape == (4, 16, 16)
    cond = policy.encode(PROMPTS)
    # two CLIPs (12 + 12 wide) zero-padded to T5's 32, then 256 T5 tokens; pooled 32 + 32
    assert cond["prompt_embeds"].shape == (2, 77 + 256, 32) and cond["pooled"].shape == (2, 64)
    assert torch.all(cond["prompt_embeds"][:, :77, 24:] == 0)
    x = torch.randn(2, *policy.latent_shape)
    sigma = torch.tensor([0.8, 0.4])
    v_text = plain.velocity(x, sigma, cond)
    v_uncond = plain.velocity(x, sigma, plain.encode([""] * 2))
    torch.testing.assert_close(
        policy.velocity(x, sigma, cond), v_uncond + 4.5 * (v_text - v_uncond), rtol=1e-4, atol=1e-4
    )


def test_sd3_without_t5(tmp_path):
    from tests.fixtures.models import write_sd3_pipeline

    path = write_sd3_pipeline(tmp_path / "no_t5", with_t5=False)
    policy = policy_of(path)
    cond = policy.encode(PROMPTS)
    assert cond["prompt_embeds"].shape == (2, 77 + 77, 32)  # zeros stand in for T5
    assert torch.all(cond["prompt_embeds"][:, 77:] == 0)


def test_lora_trains_only_adapters_and_starts_at_the_base(flux_dir):
    lora = policy_of(
        flux_dir,
        lora={"rank": 4, "alpha": 8, "targets": ["attn.to_q", "attn.to_v"]},
        gradient_checkpointing=True,
    )
    full = policy_of(flux_dir, finetune="full")
    assert lora.trainable_names and all(".lora_A." in n or ".lora_B." in n for n in lora.trainable_names)
    assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in lora.trainable_names} == {"to_q", "to_v"}
    assert len(full.trainable_names) == len(list(full.transformer.parameters()))
    cond, x = lora.encode(PROMPTS), torch.randn(2, *lora.latent_shape)
    torch.testing.assert_close(lora.velocity(x, 0.5, cond), full.velocity(x, 0.5, cond))  # lora_B = 0
    # the learner's view: gradients reach the adapters only (through gradient checkpointing)
    lora.prepare_training()
    lora.velocity(x, 0.5, cond).square().mean().backward()
    grads = {n for n, p in lora.transformer.named_parameters() if p.grad is not None}
    assert grads == set(lora.trainable_names)
    assert lora.transformer.is_gradient_checkpointing
    # sync: only adapter weights travel, and they change the velocity
    state = {k: v + 0.1 for k, v in lora.trainable_state().items()}
    other = policy_of(flux_dir, lora={"rank": 4, "alpha": 8, "targets": ["attn.to_q", "attn.to_v"]})
    other.load_trainable_state(state)
    assert other.state_checksum(other.trainable_state()) == other.state_checksum(state)
    assert not torch.allclose(other.velocity(x, 0.5, cond), full.velocity(x, 0.5, cond))


def test_bf16_transformer_float32_velocity(flux_dir):
    policy = load_policy(
        str(flux_dir), dtype=torch.bfloat16, options=ModelConfig(path=str(flux_dir), resolution=32)
    )
    # LoRA adapters too: learner (DeepSpeed bf16) and rollout must hold the same dtype, or the
    # sync checksum and the ratio would differ
    assert {p.dtype for p in policy.transformer.parameters()} == {torch.bfloat16}
    assert {v.dtype for v in policy.trainable_state().values()} == {torch.bfloat16}
    v = policy.velocity(torch.randn(1, *policy.latent_shape), 0.5, policy.encode(PROMPTS[:1]))
    assert v.dtype == torch.float32 and torch.isfinite(v).all()


def test_embedding_cache_replaces_the_text_encoders(sd3_dir, tmp_path):
    from rollout.embeddings import EmbeddingCache, write_embeddings
    from rollout.policy import text_encoder_from_config

    options = ModelConfig(path=str(sd3_dir), resolution=32)
    kind, encoder = text_encoder_from_config(options)
    write_embeddings(encoder, PROMPTS + [""], tmp_path / "emb", kind=kind, model=str(sd3_dir), shard_size=2)
    assert sorted(p.name for p in (tmp_path / "emb").iterdir()) == [
        "embeddings-00000.safetensors",
        "embeddings-00001.safetensors",
        "index.json",
    ]
    live = policy_of(sd3_dir)
    cached = policy_of(sd3_dir, embeddings=str(tmp_path / "emb"))
    assert isinstance(cached.text_encoder, EmbeddingCache)  # no CLIP / T5 loaded
    a, b = live.encode(PROMPTS[::-1]), cached.encode(PROMPTS[::-1])
    for k in a.tensors:  # (equal up to batched-matmul rounding: the batches differ)
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    x = torch.randn(2, *live.latent_shape)
    torch.testing.assert_close(live.velocity(x, 0.5, a), cached.velocity(x, 0.5, b))  # CFG's "" cached too
    with pytest.raises(KeyError, match="raygrpo embed"):
        cached.encode(["a prompt nobody embedded"])
    with pytest.raises(ValueError, match="sd3 embeddings"):
        EmbeddingCache(tmp_path / "emb", kind="flux", model_path="x")


def test_dispatch_errors_name_the_fix(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline"}))
    with pytest.raises(ValueError, match="supported pipelines"):
        load_policy(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        load_policy(str(tmp_path / "missing"))


def test_resolution_shift_and_validation():
    model = ModelConfig(resolution=720)
    # 720 px -> 45² = 2025 latent tokens: μ = 0.5 + (1.15 − 0.5)·(2025 − 256)/(4096 − 256)
    mu = 0.5 + 0.65 * (2025 - 256) / 3840
    assert schedule_shift(model, RolloutConfig(shift="resolution")) == pytest.approx(np.exp(mu))
    assert schedule_shift(model, RolloutConfig(shift=3.0)) == 3.0
    with pytest.raises(ValueError, match="multiple of 16"):
        ModelConfig(resolution=500)
