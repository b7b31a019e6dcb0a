"""SD3 / SD3.5 as a Policy: diffusers `SD3Transformer2DModel`, read from a StableDiffusion3Pipeline layout.

pipeline dir   transformer/ vae/ text_encoder/ (CLIP-L) text_encoder_2/ (CLIP-G)
               text_encoder_3/ (T5, may be null) tokenizer/ tokenizer_2/ tokenizer_3/ ...
latents        VAE latents [16, H/8, W/8], unpacked (the transformer patchifies 2×2 itself)
conditioning   prompt_embeds [B, 77 + T, 4096]: the two CLIPs' penultimate hidden states
               side by side (768 + 1280), zero-padded to T5's width, then the T5 sequence;
               pooled [B, 2048]: both CLIPs' projected EOS embeddings
timestep       sigma · 1000 (SD3's transformer takes scheduler timesteps)
true CFG       velocity = v_uncond + scale · (v_cond − v_uncond), with v_uncond from
               `negative_prompt`: both halves run in one batched forward. The learner
               recomputes the very same combination, so rollout and training agree.
decode         z / scaling_factor + shift_factor -> VAE -> uint8
"""

from __future__ import annotations

import numpy as np
import torch

from rollout.config import ModelConfig
from rollout.models.base import Conditioning, Policy
from rollout.models.common import frozen, setup_trainable, text_encoder_or_cache, vae_decode, vae_scale_factor

KIND = "sd3"
DEFAULT_GUIDANCE = 4.5
DEFAULT_MAX_SEQUENCE_LENGTH = 256


class SD3TextEncoder(torch.nn.Module):
    """The three text encoders, as StableDiffusion3Pipeline.encode_prompt combines them."""

    def __init__(
        self,
        clips: list,
        clip_tokenizers: list,
        t5,
        t5_tokenizer,
        max_sequence_length: int,
        joint_attention_dim: int,
    ):
        super().__init__()
        self.clips = torch.nn.ModuleList(frozen(c) for c in clips)
        self.t5 = frozen(t5) if t5 is not None else None
        self.clip_tokenizers, self.t5_tokenizer = clip_tokenizers, t5_tokenizer
        self.max_sequence_length = max_sequence_length
        self.joint_attention_dim = joint_attention_dim

    @torch.no_grad()
    def forward(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        device = next(self.clips[0].parameters()).device
        hidden, pooled = [], []
        for clip, tokenizer in zip(self.clips, self.clip_tokenizers):
            ids = tokenizer(
                prompts,
                padding="max_length",
                max_length=tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            ).input_ids
            out = clip(ids.to(device), output_hidden_states=True)
            pooled.append(out[0])  # text_embeds [B, P_i]
            hidden.append(out.hidden_states[-2])  # penultimate layer [B, 77, D_i]
        clip_embeds = torch.cat(hidden, dim=-1)  # [B, 77, 768 + 1280]
        if self.t5 is None:  # SD3 without T5: zeros in its place, as the pipeline does
            t5_embeds = clip_embeds.new_zeros(
                len(prompts), self.clip_tokenizers[0].model_max_length, self.joint_attention_dim
            )
        else:
            ids = self.t5_tokenizer(
                prompts,
                padding="max_length",
                max_length=self.max_sequence_length,
                truncation=True,
                return_tensors="pt",
            ).input_ids
            t5_embeds = self.t5(ids.to(device))[0]  # [B, T, 4096]
        clip_embeds = torch.nn.functional.pad(clip_embeds, (0, t5_embeds.shape[-1] - clip_embeds.shape[-1]))
        return {
            "prompt_embeds": torch.cat([clip_embeds, t5_embeds], dim=-2),  # [B, 77 + T, 4096]
            "pooled": torch.cat(pooled, dim=-1),
        }  # [B, 2048]


class SD3Policy(Policy):
    def __init__(
        self,
        transformer,
        vae,
        text_encoder,
        resolution: int,
        guidance_scale: float,
        negative_prompt: str,
        dtype,
        trainable_names=None,
    ):
        super().__init__(transformer, text_encoder, dtype, trainable_names)
        self.vae = frozen(vae)
        self.resolution = resolution
        scale = vae_scale_factor(vae) * transformer.config.patch_size
        if resolution % scale:
            raise ValueError(
                f"model.resolution {resolution} must be a multiple of {scale} for this SD3 model"
            )
        side = resolution // vae_scale_factor(vae)
        self._latent_shape = (transformer.config.in_channels, side, side)
        self.guidance_scale = guidance_scale
        self.negative_prompt = negative_prompt

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return self._latent_shape

    @property
    def cfg(self) -> bool:
        return self.guidance_scale > 1

    def velocity(self, x: torch.Tensor, sigma: torch.Tensor | float, cond: Conditioning) -> torch.Tensor:
        """The (CFG-combined) velocity; x [B, C, h, w] float32, sigma float or [B] -> [B, C, h, w] float32."""
        b = x.shape[0]
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).expand(b)
        embeds, pooled = cond["prompt_embeds"], cond["pooled"]  # [B, S, D], [B, P]
        if self.cfg:
            negative = self.encode([self.negative_prompt])
            embeds = torch.cat([negative["prompt_embeds"].expand_as(embeds), embeds])  # [2B, S, D]
            pooled = torch.cat([negative["pooled"].expand_as(pooled), pooled])
            x, sigma = torch.cat([x, x]), torch.cat([sigma, sigma])
        out = self.transformer(
            hidden_states=x.to(self.dtype),
            encoder_hidden_states=embeds.to(self.dtype),
            pooled_projections=pooled.to(self.dtype),
            timestep=sigma
            * 1000,  # float32, as StableDiffusion3Pipeline passes it (bf16 would round 970.9 to 968)
            return_dict=False,
        )[0].float()
        if not self.cfg:
            return out
        uncond, text = out.chunk(2)
        return uncond + self.guidance_scale * (text - uncond)

    @torch.no_grad()
    def decode(self, x0: torch.Tensor) -> np.ndarray:
        """Latents [B, C, h, w] -> uint8 images [B, H, W, 3]."""
        return vae_decode(self.vae, x0.float())


def load_text_encoder(path: str, options: ModelConfig, dtype=torch.float32) -> SD3TextEncoder:
    from diffusers import DiffusionPipeline, SD3Transformer2DModel
    from transformers import AutoTokenizer, CLIPTextModelWithProjection, T5EncoderModel

    index = DiffusionPipeline.load_config(path)
    has_t5 = (index.get("text_encoder_3") or [None])[0] is not None
    transformer_cfg = SD3Transformer2DModel.load_config(path, subfolder="transformer")  # (a small JSON)
    return SD3TextEncoder(
        [
            CLIPTextModelWithProjection.from_pretrained(path, subfolder=f, dtype=dtype)
            for f in ("text_encoder", "text_encoder_2")
        ],
        [AutoTokenizer.from_pretrained(path, subfolder=f) for f in ("tokenizer", "tokenizer_2")],
        T5EncoderModel.from_pretrained(path, subfolder="text_encoder_3", dtype=dtype) if has_t5 else None,
        AutoTokenizer.from_pretrained(path, subfolder="tokenizer_3") if has_t5 else None,
        options.max_sequence_length or DEFAULT_MAX_SEQUENCE_LENGTH,
        transformer_cfg["joint_attention_dim"],
    )


def load(path: str, options: ModelConfig, dtype=torch.float32, device: str = "cpu") -> SD3Policy:
    """SD3 / SD3.5 from a StableDiffusion3Pipeline directory or hub id (module docstring)."""
    from diffusers import AutoencoderKL, SD3Transformer2DModel

    transformer = SD3Transformer2DModel.from_pretrained(
        path, subfolder="transformer", torch_dtype=dtype, device_map=str(device)
    )  # no float32 copy, straight to `device`
    vae = AutoencoderKL.from_pretrained(path, subfolder="vae", torch_dtype=dtype, device_map=str(device))
    names = setup_trainable(transformer, options, default="lora")
    text = text_encoder_or_cache(options, KIND, lambda: load_text_encoder(path, options, dtype))
    # StableDiffusion3Pipeline's default size: transformer sample_size latent cells
    resolution = options.resolution or transformer.config.sample_size * vae_scale_factor(vae)
    guidance = DEFAULT_GUIDANCE if options.guidance_scale is None else options.guidance_scale
    return SD3Policy(transformer, vae, text, resolution, guidance, options.negative_prompt, dtype, names)
