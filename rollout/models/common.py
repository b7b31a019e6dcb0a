"""Glue shared by the diffusers policies (FLUX, SD3): trainable weights, VAE decoding, text
encoders or the embedding cache."""

from __future__ import annotations

import numpy as np
import torch

from rollout.config import ModelConfig


def setup_trainable(transformer: torch.nn.Module, options: ModelConfig, default: str) -> list[str]:
    """Attach LoRA adapters (peft) or keep every weight trainable; switch on gradient
    checkpointing if asked. Returns the trainable parameter names (what is synced and
    checkpointed): only the `lora_A` / `lora_B` weights under LoRA."""
    finetune = options.finetune or default
    if finetune == "lora":
        from peft import LoraConfig

        transformer.requires_grad_(False)
        # lora_B starts at zero, so the adapted policy starts exactly at the base model.
        transformer.add_adapter(LoraConfig(r=options.lora.rank, lora_alpha=options.lora.alpha,
                                           target_modules=list(options.lora.targets), init_lora_weights=True))
        names = [n for n, p in transformer.named_parameters() if p.requires_grad]
    else:
        transformer.requires_grad_(True)
        names = [n for n, _ in transformer.named_parameters()]
    if options.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    return names


def frozen(module: torch.nn.Module) -> torch.nn.Module:
    return module.requires_grad_(False).eval()


@torch.no_grad()
def vae_decode(vae, latents: torch.Tensor) -> np.ndarray:
    """VAE latents [B, C, h, w] (scaled as the transformer sees them) -> uint8 [B, H, W, 3].

    Undo the pipeline's latent normalisation, z = x / scaling_factor + shift_factor, decode
    to [-1, 1], and quantise as diffusers' VaeImageProcessor does: round((x/2 + 0.5)·255)."""
    cfg = vae.config
    z = latents / cfg.scaling_factor + (cfg.shift_factor or 0.0)
    pixels = vae.decode(z.to(vae.dtype), return_dict=False)[0].float()  # [B, 3, H, W] in ~[-1, 1]
    pixels = (pixels / 2 + 0.5).clamp(0, 1)
    return (pixels * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def vae_scale_factor(vae) -> int:
    """Pixels per latent cell: 2^(number of VAE blocks − 1), 8 for FLUX.1 and SD3.5."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def text_encoder_or_cache(options: ModelConfig, kind: str, build):
    """The embedding cache when `model.embeddings` is set (no text encoder is loaded), else
    `build()` (the model's own text encoders)."""
    if options.embeddings:
        from rollout.embeddings import EmbeddingCache

        return EmbeddingCache(options.embeddings, kind=kind, model_path=options.path)
    return build()
