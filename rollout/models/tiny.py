"""The embedded tiny models as a Policy (rollout/tiny/: a FLUX transformer over pixel patches).

    latents     pixels in [-1, 1] as 4×4 patches: [B, 64, 48] for a 32×32 image (shapes),
                [B, 128, 48] for a 32×64 one (text)
    conditioning prompt_embeds [B, T, 64] (CLIP last hidden state, T = 16 shapes / 8 text),
                pooled [B, 64] (EOS state)

`model.path: tiny` is the shapes model (rollout/tiny/weights), `tiny:text` the text model
(rollout/tiny/weights_text); any directory with raygrpo_model.json (kind 'tiny') works.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from rollout.config import ModelConfig
from rollout.models.base import Conditioning, Policy
from rollout.models.common import frozen, setup_trainable, text_encoder_or_cache
from rollout.models.flux import transformer_velocity
from rollout.tiny import model as tiny_model

KIND = "tiny"  # `model.path: tiny`: the shipped shapes-world model (rollout.policy.TINY)


class TinyTextEncoder(torch.nn.Module):
    """Word-level tokenizer + CLIPTextModel -> {prompt_embeds [B, T, D], pooled [B, D]}."""

    def __init__(self, model, tokenizer):
        super().__init__()
        self.model = frozen(model)
        self.tokenizer = tokenizer

    @torch.no_grad()
    def forward(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        device = next(self.model.parameters()).device
        tokens = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        out = self.model(input_ids=tokens.input_ids.to(device))
        return {"prompt_embeds": out.last_hidden_state, "pooled": out.pooler_output}


class TinyPolicy(Policy):
    """`txt_ids` [T, 3]: the text tokens' RoPE positions (rollout/tiny/model.py `text_ids`);
    None = zeros, FLUX's own choice (the shapes model and text weights saved before them)."""

    def __init__(
        self,
        transformer,
        text_encoder,
        image_size: int | tuple[int, int],
        dtype=torch.float32,
        trainable_names=None,
        txt_ids: torch.Tensor | None = None,
    ):
        transformer = transformer if transformer.dtype == dtype else transformer.to(dtype)
        super().__init__(transformer, text_encoder, dtype, trainable_names)
        self.height, self.width = (
            (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        )
        tokens = (self.height // tiny_model.PATCH) * (self.width // tiny_model.PATCH)
        self._latent_shape = (tokens, transformer.config.in_channels)
        self.register_buffer("img_ids", tiny_model.image_ids(self.height, self.width), persistent=False)
        self.register_buffer(
            "txt_ids",
            None if txt_ids is None else torch.as_tensor(txt_ids, dtype=torch.float32),
            persistent=False,
        )

    # (pretraining reaches the text model and tokenizer directly)
    @property
    def tokenizer(self):
        return self.text_encoder.tokenizer

    @property
    def text_model(self):
        return self.text_encoder.model

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return self._latent_shape

    def velocity(self, x: torch.Tensor, sigma: torch.Tensor | float, cond: Conditioning) -> torch.Tensor:
        """Velocity v ≈ eps − x0 at noise level sigma; x [B, L, D] -> [B, L, D] float32."""
        tokens = cond["prompt_embeds"].shape[1]
        txt_ids = self.txt_ids if self.txt_ids is not None else torch.zeros(tokens, 3, device=x.device)
        if txt_ids.shape[0] != tokens:
            raise ValueError(
                f"prompt_embeds has {tokens} tokens but the model's txt_ids (raygrpo_model.json) "
                f"{txt_ids.shape[0]}: the text encoder or embedding cache does not belong to this "
                "model"
            )
        return transformer_velocity(self.transformer, x, sigma, cond, self.dtype, self.img_ids, txt_ids)

    @torch.no_grad()
    def decode(self, x0: torch.Tensor) -> np.ndarray:
        """Latents [B, L, D] -> uint8 images [B, H, W, 3]."""
        pixels = tiny_model.unpatchify(x0.float().clamp(-1, 1), self.height, self.width)
        return ((pixels + 1) * 127.5).round().to(torch.uint8).cpu().numpy()

    @torch.no_grad()
    def encode_images(self, images: np.ndarray) -> torch.Tensor:
        """uint8 [B, H, W, 3] -> clean latents x0 [B, L, D] in [-1, 1] (pretraining data)."""
        pixels = torch.as_tensor(images, device=self.device).float() / 127.5 - 1
        return tiny_model.patchify(pixels)


TINY_TEXT = "tiny:text"  # `model.path: tiny:text`: the shipped text-world model
SHIPPED = {KIND: tiny_model.WEIGHTS_DIR, TINY_TEXT: tiny_model.TEXT_WEIGHTS_DIR}


def root_of(path: str) -> Path:
    return SHIPPED[path] if path in SHIPPED else Path(path).expanduser()


def load_text_encoder(path: str, options: ModelConfig, dtype=torch.float32) -> TinyTextEncoder:
    """The tiny text encoder, always float32 (it is tiny; `dtype` is the transformer's)."""
    from transformers import AutoTokenizer, CLIPTextModel

    root = root_of(path)
    model = CLIPTextModel.from_pretrained(root / "text_encoder")
    return TinyTextEncoder(model, AutoTokenizer.from_pretrained(root / "tokenizer"))


def load(path: str, options: ModelConfig, dtype=torch.float32, device: str = "cpu") -> TinyPolicy:
    """The tiny model written by rollout.tiny.model.save (raygrpo_model.json kind 'tiny')."""
    from diffusers import FluxTransformer2DModel

    root = root_of(path)
    meta = json.loads((root / "raygrpo_model.json").read_text())
    if options.resolution not in (None, meta["image_size"]):
        size = meta["image_size"]
        shape = f"{size[0]}×{size[1]}" if isinstance(size, list) else f"{size}²"
        raise ValueError(
            f"model.resolution {options.resolution}: the tiny model makes {shape} "
            "images only; leave model.resolution unset"
        )
    transformer = FluxTransformer2DModel.from_pretrained(
        root / "transformer", torch_dtype=dtype, device_map=str(device)
    )
    names = setup_trainable(transformer, options, default="full")
    text = text_encoder_or_cache(options, KIND, lambda: load_text_encoder(path, options, dtype))
    return TinyPolicy(transformer, text, meta["image_size"], dtype, names, tiny_model.saved_text_ids(meta))
