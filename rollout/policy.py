"""Policy loading: a diffusers flow transformer + text encoder + decoder, behind one interface.

    policy.encode(prompts)            -> Conditioning, cached per prompt (text encoders frozen)
    policy.velocity(x, sigma, cond)   -> float32 velocity, same shape as x
    policy.decode(x0)                 -> uint8 images [B, H, W, 3]
    policy.latent_shape               -> shape of one sample's latent, e.g. (64, 48)

The sampler (`rollout.sampler`) and the learner call exactly these, so a rollout and its
recomputation see the same numbers. The transformer runs in `dtype` (bf16 on GPUs); the
velocity is returned in float32 because the SDE step and log-prob are float32.

`load_policy(path)` reads a local directory (or hub id) whose `raygrpo_model.json` names
its kind; kind `tiny` is the embedded default (`rollout/tiny/`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rollout.tiny import model as tiny_model

TINY = "tiny"  # `model.path: tiny` means the shipped embedded model


@dataclass
class Conditioning:
    """Text conditioning for a batch. prompt_embeds [B, T, D] float32, pooled [B, D] float32."""

    prompt_embeds: torch.Tensor
    pooled: torch.Tensor

    def take(self, index: torch.Tensor | list[int]) -> "Conditioning":
        return Conditioning(self.prompt_embeds[index], self.pooled[index])


class Policy(torch.nn.Module):
    """A flow-matching text-to-image policy; `transformer` holds every trainable weight."""

    def __init__(self, transformer, text_encoder, tokenizer, image_size: int, dtype=torch.float32):
        super().__init__()
        self.transformer = transformer if transformer.dtype == dtype else transformer.to(dtype)
        self._latent_shape = ((image_size // tiny_model.PATCH) ** 2, transformer.config.in_channels)
        # Full fine-tuning trains every transformer weight (LoRA would list only its adapters).
        self.trainable_names = [name for name, _ in transformer.named_parameters()]
        self.text_encoder = text_encoder.requires_grad_(False).eval()
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.dtype = dtype
        self.register_buffer("img_ids", tiny_model.image_ids(image_size), persistent=False)
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return self._latent_shape

    @property
    def device(self) -> torch.device:
        return self.img_ids.device

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> Conditioning:
        missing = sorted({p for p in prompts if p not in self._cache})
        if missing:
            tokens = self.tokenizer(
                missing, padding="max_length", max_length=tiny_model.MAX_TOKENS, return_tensors="pt"
            ).to(self.device)
            out = self.text_encoder(input_ids=tokens.input_ids)
            for i, p in enumerate(missing):
                self._cache[p] = (out.last_hidden_state[i].float(), out.pooler_output[i].float())
        embeds, pooled = zip(*(self._cache[p] for p in prompts))
        return Conditioning(torch.stack(embeds), torch.stack(pooled))

    def velocity(self, x: torch.Tensor, sigma: torch.Tensor | float, cond: Conditioning) -> torch.Tensor:
        """Velocity v ≈ eps − x0 at noise level sigma; x [B, L, D] -> [B, L, D] float32."""
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).expand(x.shape[0])
        out = self.transformer(
            hidden_states=x.to(self.dtype),
            encoder_hidden_states=cond.prompt_embeds.to(self.dtype),
            pooled_projections=cond.pooled.to(self.dtype),
            timestep=sigma.to(self.dtype),  # FLUX multiplies by 1000 inside
            img_ids=self.img_ids,
            txt_ids=torch.zeros(cond.prompt_embeds.shape[1], 3, device=x.device),
            return_dict=False,
        )[0]
        return out.float()

    @torch.no_grad()
    def decode(self, x0: torch.Tensor) -> np.ndarray:
        """Latents [B, L, D] -> uint8 images [B, H, W, 3]."""
        pixels = tiny_model.unpatchify(x0.float().clamp(-1, 1), self.image_size)
        return ((pixels + 1) * 127.5).round().to(torch.uint8).cpu().numpy()

    @torch.no_grad()
    def encode_images(self, images: np.ndarray) -> torch.Tensor:
        """uint8 [B, H, W, 3] -> clean latents x0 [B, L, D] in [-1, 1] (pretraining data)."""
        pixels = torch.as_tensor(images, device=self.device).float() / 127.5 - 1
        return tiny_model.patchify(pixels)


    # -- weights moving between learner and rollout workers -------------------------------
    def trainable_state(self) -> dict[str, torch.Tensor]:
        """CPU copies of every trainable transformer weight (what a sync sends)."""
        module = getattr(self.transformer, "module", self.transformer)  # a DeepSpeed engine wraps it
        params = dict(module.named_parameters())
        return {k: params[k].detach().cpu().clone() for k in self.trainable_names}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        module = getattr(self.transformer, "module", self.transformer)
        params = dict(module.named_parameters())
        unknown = sorted(set(state) - set(params))
        if unknown:
            raise KeyError(f"weights for unknown parameters {unknown[:3]}")
        with torch.no_grad():
            for k, v in state.items():
                params[k].copy_(v)

    @staticmethod
    def state_checksum(state: dict[str, torch.Tensor]) -> str:
        """blake2b over names, shapes, dtypes and bytes, in name order: equal iff weights equal."""
        h = hashlib.blake2b(digest_size=16)
        for k in sorted(state):
            t = state[k].detach().cpu().contiguous()
            h.update(f"{k}:{tuple(t.shape)}:{t.dtype};".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return h.hexdigest()


def resolve_path(path: str) -> Path:
    if path == TINY:
        return tiny_model.WEIGHTS_DIR
    p = Path(path).expanduser()
    if not (p / "raygrpo_model.json").exists():
        raise FileNotFoundError(
            f"model.path {path!r} has no raygrpo_model.json; point model.path at a directory "
            "written by rollout.tiny.model.save (or use 'tiny' for the shipped model)"
        )
    return p


def load_policy(path: str = TINY, *, dtype: torch.dtype = torch.float32, device: str = "cpu") -> Policy:
    """Load a policy from a local directory (see module docstring)."""
    from diffusers import FluxTransformer2DModel
    from transformers import AutoTokenizer, CLIPTextModel

    root = resolve_path(path)
    meta = json.loads((root / "raygrpo_model.json").read_text())
    if meta.get("kind") != TINY:
        raise ValueError(f"{root}/raygrpo_model.json has kind {meta.get('kind')!r}; supported: 'tiny'")
    transformer = FluxTransformer2DModel.from_pretrained(root / "transformer")
    text_encoder = CLIPTextModel.from_pretrained(root / "text_encoder")
    tokenizer = AutoTokenizer.from_pretrained(root / "tokenizer")
    return Policy(transformer, text_encoder, tokenizer, meta["image_size"], dtype).to(device)
