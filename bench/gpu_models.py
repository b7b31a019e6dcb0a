"""The models bench/gpu_throughput.py measures: FLUX.1-dev's transformer and VAE (and their tiny
CPU stand-ins), built with random weights in bf16 on the device, with LoRA and gradient
checkpointing as the learner trains them; a random-embedding text stand-in; and the FLOP count
MFU divides by.

FLOPs (flux_forward_flops): a forward of FluxTransformer2DModel over L = L_img + L_txt tokens of
width D counts 2·(multiply-adds) of every linear and 4·L²·D per attention (QKᵀ and AV):
    per double block  24·D²·L (q, k, v, out 4D² + MLP 8D², each stream) + 4·L²·D + 2·2·6D² (AdaLN)
    per single block  24·D²·L (q, k, v 3D² + MLP in 4D² + out 5D²) + 4·L²·D + 2·3D² (AdaLN)
    embeddings        2·(C_in·D·L_img + J·D·L_txt + C_out·D·L_img) + the timestep / guidance /
                      pooled MLPs 2·((256 + D)·D·(1 + guidance) + (P + D)·D) + norm_out 2·2D²
Model FLOPs of a LoRA training step = 2 × forward per transition (input gradients; the frozen
weights get none; LoRA's own are < 1 %), not counting checkpointing's recompute (MFU convention).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from memory_model import FLUX_DEV, FLUX_VAE, build_transformer, build_vae  # noqa: E402
from rollout.config import LoraConfig, ModelConfig  # noqa: E402
from rollout.models.common import setup_trainable  # noqa: E402
from rollout.models.flux import FluxPolicy  # noqa: E402

TINY_FLUX = dict(
    FLUX_DEV,
    num_layers=1,
    num_single_layers=2,
    attention_head_dim=16,
    num_attention_heads=2,
    joint_attention_dim=32,
    pooled_projection_dim=32,
    in_channels=16,
    axes_dims_rope=(4, 6, 6),
)
TINY_VAE = dict(
    FLUX_VAE,
    latent_channels=4,
    block_out_channels=(8, 16),
    norm_num_groups=4,
    layers_per_block=1,
    down_block_types=("DownEncoderBlock2D",) * 2,
    up_block_types=("UpDecoderBlock2D",) * 2,
)
TINY_QWEN = dict(
    text=dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=1000,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=1,
        rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},
    ),
    vision=dict(
        depth=2,
        embed_dim=32,
        mlp_ratio=2,
        num_heads=2,
        hidden_size=64,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
    ),
)


def flux_forward_flops(cfg: dict, image_tokens: int, text_tokens: int) -> int:
    """FLOPs of one sample's FluxTransformer2DModel forward (module docstring)."""
    d = cfg["attention_head_dim"] * cfg["num_attention_heads"]
    length = image_tokens + text_tokens
    attention = 4 * length**2 * d
    double = 24 * d * d * length + attention + 2 * 2 * 6 * d * d
    single = 24 * d * d * length + attention + 2 * 3 * d * d
    c_in, c_out = cfg["in_channels"], cfg.get("out_channels") or cfg["in_channels"]
    embed = 2 * (
        c_in * d * image_tokens + cfg["joint_attention_dim"] * d * text_tokens + c_out * d * image_tokens
    )
    embed += 2 * ((256 + d) * d * (1 + int(cfg["guidance_embeds"])) + (cfg["pooled_projection_dim"] + d) * d)
    embed += 2 * 2 * d * d  # norm_out's AdaLN
    return cfg["num_layers"] * double + cfg["num_single_layers"] * single + embed


class RandomText:
    """Stands in for the embedding cache: fixed random T5 / CLIP embeddings per prompt (bf16, as cached)."""

    def __init__(self, seq: int, width: int, pooled: int):
        self.seq, self.width, self.pooled = seq, width, pooled

    def __call__(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(len(prompts))
        return {
            "prompt_embeds": torch.randn(len(prompts), self.seq, self.width, generator=g).bfloat16(),
            "pooled": torch.randn(len(prompts), self.pooled, generator=g).bfloat16(),
        }


def build(tiny: bool, device: str):
    """(transformer with LoRA + checkpointing, VAE, text stand-in), bf16, created on `device`."""
    torch.manual_seed(0)
    cfg = TINY_FLUX if tiny else FLUX_DEV
    transformer = build_transformer("flux", cfg, device=device)
    vae = build_vae(TINY_VAE if tiny else FLUX_VAE, device=device).requires_grad_(False)
    options = ModelConfig(
        finetune="lora",
        lora=LoraConfig(rank=4 if tiny else 64, alpha=8 if tiny else 128),
        gradient_checkpointing=True,
    )
    names = setup_trainable(transformer, options, default="lora")
    text = RandomText(32 if tiny else 512, cfg["joint_attention_dim"], cfg["pooled_projection_dim"])
    return cfg, transformer, vae, text, names


def policy_at(parts, resolution: int, device: str) -> FluxPolicy:
    _, transformer, vae, text, names = parts
    return FluxPolicy(transformer, vae, text, resolution, 3.5, torch.bfloat16, names).to(device)
