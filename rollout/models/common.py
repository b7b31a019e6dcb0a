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
        transformer.add_adapter(
            LoraConfig(
                r=options.lora.rank,
                lora_alpha=options.lora.alpha,
                target_modules=list(options.lora.targets),
                init_lora_weights=True,
            )
        )
        names = [n for n, p in transformer.named_parameters() if p.requires_grad]
    else:
        transformer.requires_grad_(True)
        names = [n for n, _ in transformer.named_parameters()]
    if options.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    return names


def frozen(module: torch.nn.Module) -> torch.nn.Module:
    return module.requires_grad_(False).eval()


# Elements of the VAE decoder's widest activation (block_out_channels[0] × H × W per image)
# one decode call may hold: 2^28 (512 MiB in bf16) is 8 images of 512² or 4 of 720² for FLUX's
# VAE, far below the 2^31-element limit a single conv input must stay under (E-GRPO decodes 48
# images of 720² per prompt: 3.2·10^9 elements in one call).
DECODE_ELEMENTS = 1 << 28


def decode_batch(vae, height: int, width: int) -> int:
    """Images per VAE decode call at this image size (DECODE_ELEMENTS)."""
    widest = vae.config.block_out_channels[0] * height * width
    return max(1, DECODE_ELEMENTS // widest)


@torch.no_grad()
def vae_decode(vae, latents: torch.Tensor) -> np.ndarray:
    """VAE latents [B, C, h, w] (scaled as the transformer sees them) -> uint8 [B, H, W, 3],
    `decode_batch` images per decoder call.

    Undo the pipeline's latent normalisation, z = x / scaling_factor + shift_factor, decode
    to [-1, 1], and quantise as diffusers' VaeImageProcessor does: round((x/2 + 0.5)·255)."""
    cfg = vae.config
    scale = vae_scale_factor(vae)
    step = decode_batch(vae, latents.shape[-2] * scale, latents.shape[-1] * scale)
    images = []
    for lo in range(0, latents.shape[0], step):
        z = latents[lo : lo + step] / cfg.scaling_factor + (cfg.shift_factor or 0.0)
        pixels = vae.decode(z.to(vae.dtype), return_dict=False)[0].float()  # [b, 3, H, W] in ~[-1, 1]
        pixels = (pixels / 2 + 0.5).clamp(0, 1)
        images.append((pixels * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu())
    return torch.cat(images).numpy()


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
