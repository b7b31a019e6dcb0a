"""FLUX.1 as a Policy: diffusers `FluxTransformer2DModel`, read from a FluxPipeline layout.

pipeline dir   transformer/ vae/ text_encoder/ (CLIP-L) tokenizer/ text_encoder_2/ (T5)
               tokenizer_2/ scheduler/ model_index.json — local or a hub id
latents        VAE latents [16, H/8, W/8] packed in 2×2 patches: one sample is
               [L, 64] with L = (H/16)·(W/16) tokens (in_channels = 4 × latent channels)
img_ids        [L, 3] = (0, row, col) of each packed token (FLUX's 2-D RoPE positions)
conditioning   prompt_embeds [B, T, 4096] (T5 last hidden state, T = max_sequence_length),
               pooled [B, 768] (CLIP pooler output); txt_ids are zeros [T, 3]
guidance       FLUX.1-dev is guidance-distilled: the transformer takes the guidance scale
               as an input (one forward per step, no CFG); schnell has no guidance embedding
timestep       sigma in [0, 1] (the transformer multiplies timestep and guidance by 1000)
decode         unpack -> z / scaling_factor + shift_factor -> VAE -> uint8
"""

from __future__ import annotations

import numpy as np
import torch

from rollout.config import ModelConfig
from rollout.models.base import Conditioning, Policy
from rollout.models.common import frozen, setup_trainable, text_encoder_or_cache, vae_decode, vae_scale_factor

KIND = "flux"
DEFAULT_GUIDANCE = 3.5
DEFAULT_MAX_SEQUENCE_LENGTH = 512


class FluxTextEncoder(torch.nn.Module):
    """CLIP pooled output + T5 sequence, as FluxPipeline.encode_prompt computes them."""

    def __init__(self, clip, clip_tokenizer, t5, t5_tokenizer, max_sequence_length: int):
        super().__init__()
        self.clip, self.t5 = frozen(clip), frozen(t5)
        self.clip_tokenizer, self.t5_tokenizer = clip_tokenizer, t5_tokenizer
        self.max_sequence_length = max_sequence_length

    @torch.no_grad()
    def forward(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        device = next(self.clip.parameters()).device
        clip_ids = self.clip_tokenizer(
            prompts,
            padding="max_length",
            max_length=self.clip_tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        t5_ids = self.t5_tokenizer(
            prompts,
            padding="max_length",
            max_length=self.max_sequence_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        pooled = self.clip(clip_ids.to(device), output_hidden_states=False).pooler_output  # [B, 768]
        embeds = self.t5(t5_ids.to(device), output_hidden_states=False)[0]  # [B, T, 4096]
        return {"prompt_embeds": embeds, "pooled": pooled}


def pack(latents: torch.Tensor) -> torch.Tensor:
    """VAE latents [B, C, h, w] -> packed tokens [B, (h/2)·(w/2), 4C] (FluxPipeline._pack_latents)."""
    b, c, h, w = latents.shape
    x = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Inverse of `pack`: [B, (h/2)·(w/2), 4C] -> [B, C, h, w]."""
    b, _, c4 = tokens.shape
    x = tokens.view(b, h // 2, w // 2, c4 // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, c4 // 4, h, w)


def latent_image_ids(h: int, w: int) -> torch.Tensor:
    """[(h/2)·(w/2), 3] = (0, row, col) of each packed token."""
    ids = torch.zeros(h // 2, w // 2, 3)
    ids[..., 1] = torch.arange(h // 2)[:, None]
    ids[..., 2] = torch.arange(w // 2)[None, :]
    return ids.reshape(-1, 3)


def transformer_velocity(
    transformer,
    x: torch.Tensor,
    sigma: torch.Tensor | float,
    cond: Conditioning,
    dtype: torch.dtype,
    img_ids: torch.Tensor,
    txt_ids: torch.Tensor,
    guidance: torch.Tensor | None = None,
) -> torch.Tensor:
    """One `FluxTransformer2DModel` call (FLUX.1 and the tiny models): v ≈ eps − x0.

    x [B, L, D] tokens, sigma float or [B], cond prompt_embeds [B, T, E] and pooled [B, P],
    img_ids [L, 3], txt_ids [T, 3] -> [B, L, D] float32. The transformer runs in `dtype`
    (bf16 on GPUs) and multiplies timestep and guidance by 1000 itself; `guidance` [B] only
    for guidance-distilled models (FLUX.1-dev), else None."""
    sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).expand(x.shape[0])  # [B]
    out = transformer(
        hidden_states=x.to(dtype),
        encoder_hidden_states=cond["prompt_embeds"].to(dtype),
        pooled_projections=cond["pooled"].to(dtype),
        timestep=sigma.to(dtype),
        guidance=guidance,
        img_ids=img_ids,
        txt_ids=txt_ids,
        return_dict=False,
    )[0]
    return out.float()


class FluxPolicy(Policy):
    def __init__(
        self,
        transformer,
        vae,
        text_encoder,
        resolution: int,
        guidance_scale: float,
        dtype,
        trainable_names=None,
    ):
        super().__init__(transformer, text_encoder, dtype, trainable_names)
        self.vae = frozen(vae)
        self.resolution = resolution
        scale = vae_scale_factor(vae)
        if resolution % (2 * scale):
            raise ValueError(
                f"model.resolution {resolution} must be a multiple of {2 * scale} for this FLUX VAE"
            )
        self.latent_hw = (resolution // scale, resolution // scale)  # h, w of the VAE latent
        self.guidance_scale = guidance_scale
        self.guidance_embeds = bool(transformer.config.guidance_embeds)
        tokens = (self.latent_hw[0] // 2) * (self.latent_hw[1] // 2)
        self._latent_shape = (tokens, transformer.config.in_channels)
        self.register_buffer("img_ids", latent_image_ids(*self.latent_hw), persistent=False)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return self._latent_shape

    def velocity(self, x: torch.Tensor, sigma: torch.Tensor | float, cond: Conditioning) -> torch.Tensor:
        """v ≈ eps − x0; x [B, L, 4C] float32, sigma float or [B] -> [B, L, 4C] float32."""
        guidance = None
        if self.guidance_embeds:
            guidance = torch.full((x.shape[0],), self.guidance_scale, device=x.device)  # [B]
        txt_ids = torch.zeros(cond["prompt_embeds"].shape[1], 3, device=x.device)  # [T, 3]
        return transformer_velocity(
            self.transformer, x, sigma, cond, self.dtype, self.img_ids, txt_ids, guidance
        )

    @torch.no_grad()
    def decode(self, x0: torch.Tensor) -> np.ndarray:
        """Packed latents [B, L, 4C] -> uint8 images [B, H, W, 3]."""
        return vae_decode(self.vae, unpack(x0.float(), *self.latent_hw))


def load_text_encoder(path: str, options: ModelConfig, dtype=torch.float32) -> FluxTextEncoder:
    from transformers import AutoTokenizer, CLIPTextModel, T5EncoderModel

    return FluxTextEncoder(
        CLIPTextModel.from_pretrained(path, subfolder="text_encoder", dtype=dtype),
        AutoTokenizer.from_pretrained(path, subfolder="tokenizer"),
        T5EncoderModel.from_pretrained(path, subfolder="text_encoder_2", dtype=dtype),
        AutoTokenizer.from_pretrained(path, subfolder="tokenizer_2"),
        options.max_sequence_length or DEFAULT_MAX_SEQUENCE_LENGTH,
    )


def load(path: str, options: ModelConfig, dtype=torch.float32, device: str = "cpu") -> FluxPolicy:
    """FLUX.1 from a FluxPipeline directory or hub id (module docstring)."""
    from diffusers import AutoencoderKL, FluxTransformer2DModel

    transformer = FluxTransformer2DModel.from_pretrained(
        path, subfolder="transformer", torch_dtype=dtype, device_map=str(device)
    )  # no float32 copy, straight to `device`
    vae = AutoencoderKL.from_pretrained(path, subfolder="vae", torch_dtype=dtype, device_map=str(device))
    names = setup_trainable(transformer, options, default="lora")
    text = text_encoder_or_cache(options, KIND, lambda: load_text_encoder(path, options, dtype))
    # FluxPipeline's default size: 128 latent cells of the 8× VAE = 1024 px
    resolution = options.resolution or 128 * vae_scale_factor(vae)
    guidance = DEFAULT_GUIDANCE if options.guidance_scale is None else options.guidance_scale
    return FluxPolicy(transformer, vae, text, resolution, guidance, dtype, names)
