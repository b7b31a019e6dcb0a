"""Policy loading: a diffusers flow transformer + text encoders + decoder, behind one interface.

    policy.encode(prompts)            -> Conditioning, cached per prompt (text encoders frozen)
    policy.velocity(x, sigma, cond)   -> float32 velocity, same shape as x
    policy.decode(x0)                 -> uint8 images [B, H, W, 3]
    policy.latent_shape               -> shape of one sample's latent, e.g. (64, 48)

The sampler (`rollout.sampler`) and the learner call exactly these, so a rollout and its
recomputation see the same numbers. The transformer runs in `dtype` (bf16 on GPUs); the
velocity is returned in float32 because the SDE step and log-prob are float32.

`load_policy(path)` dispatches on what `path` holds:
    'tiny', 'tiny:text', or a directory with raygrpo_model.json (kind 'tiny') -> rollout.models.tiny
    a diffusers pipeline (model_index.json, local or a hub id):
        _class_name FluxPipeline                                -> rollout.models.flux
        _class_name StableDiffusion3Pipeline                    -> rollout.models.sd3
With `model.embeddings` set, the text encoders are never loaded: prompt embeddings come
from the cache `raygrpo embed` wrote (rollout.embeddings).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from rollout.config import ModelConfig

TINY = "tiny"  # `model.path: tiny` means the shipped embedded model
TINY_SHIPPED = (TINY, "tiny:text")  # the shipped shapes and text-world models (rollout.models.tiny)
PIPELINES = {"FluxPipeline": "flux", "StableDiffusion3Pipeline": "sd3"}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


@dataclass
class Conditioning:
    """Text conditioning of a batch: named batch-first float32 tensors, e.g. for FLUX
    prompt_embeds [B, T, D] and pooled [B, D]. Which names a model needs is its own affair."""

    tensors: dict[str, torch.Tensor]

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.tensors[name]

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def take(self, index: torch.Tensor | list[int]) -> "Conditioning":
        return Conditioning({k: v[index] for k, v in self.tensors.items()})


class TextEncoder(Protocol):
    """Frozen prompt encoder: prompts -> {name: [B, ...] tensor} (any dtype; made float32)."""

    def __call__(self, prompts: list[str]) -> dict[str, torch.Tensor]: ...


class Policy(torch.nn.Module):
    """A flow-matching text-to-image policy; `transformer` holds every trainable weight.

    Subclasses give `latent_shape`, `velocity` and `decode`; this base holds the prompt
    cache, the device, and the weights that move between learner and rollout workers."""

    def __init__(self, transformer: torch.nn.Module, text_encoder: TextEncoder, dtype: torch.dtype,
                 trainable_names: list[str] | None = None):
        super().__init__()
        self.transformer = transformer
        self.text_encoder = text_encoder  # an nn.Module (moves with .to()) or a cache reader
        self.dtype = dtype
        # Full fine-tuning trains every transformer weight; LoRA lists only its adapters.
        self.trainable_names = trainable_names or [n for n, _ in transformer.named_parameters()]
        self.register_buffer("_anchor", torch.zeros(0), persistent=False)  # follows .to(device)
        self._cache: dict[str, dict[str, torch.Tensor]] = {}

    @property
    def latent_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return self._anchor.device

    @property
    def module(self) -> torch.nn.Module:
        """The bare transformer (the learner wraps it in a DeepSpeed engine)."""
        return getattr(self.transformer, "module", self.transformer)

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> Conditioning:
        """Conditioning [B, ...] of `prompts`, each prompt encoded once and cached (float32)."""
        missing = list(dict.fromkeys(p for p in prompts if p not in self._cache))
        if missing:
            out = self.text_encoder(missing)
            for i, p in enumerate(missing):
                self._cache[p] = {k: v[i].to(self.device, torch.float32) for k, v in out.items()}
        names = self._cache[prompts[0]].keys()
        return Conditioning({k: torch.stack([self._cache[p][k] for p in prompts]) for k in names})

    def velocity(self, x: torch.Tensor, sigma: torch.Tensor | float, cond: Conditioning) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, x0: torch.Tensor) -> np.ndarray:
        raise NotImplementedError

    def prepare_training(self) -> None:
        """Train mode, gradients on the trainable weights only (the learner calls this)."""
        module = self.module
        module.train()
        wanted = set(self.trainable_names)
        for name, p in module.named_parameters():
            p.requires_grad_(name in wanted)

    # -- weights moving between learner and rollout workers -------------------------------
    def trainable_state(self) -> dict[str, torch.Tensor]:
        """CPU copies of every trainable transformer weight (what a sync sends)."""
        params = dict(self.module.named_parameters())
        return {k: params[k].detach().cpu().clone() for k in self.trainable_names}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        params = dict(self.module.named_parameters())
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


def model_kind(path: str) -> str:
    """'tiny', 'flux' or 'sd3' for a model.path (see the module docstring)."""
    if path in TINY_SHIPPED:
        return TINY
    p = Path(path).expanduser()
    if (p / "raygrpo_model.json").exists():
        kind = json.loads((p / "raygrpo_model.json").read_text()).get("kind")
        if kind != TINY:
            raise ValueError(f"{p}/raygrpo_model.json has kind {kind!r}; supported: 'tiny'")
        return TINY
    if (p / "model_index.json").exists():
        index = json.loads((p / "model_index.json").read_text())
    elif not p.exists() and _HUB_ID.match(path):
        from diffusers import DiffusionPipeline

        index = DiffusionPipeline.load_config(path)  # fetches model_index.json only
    else:
        raise FileNotFoundError(
            f"model.path {path!r} has neither raygrpo_model.json nor model_index.json; point model.path at "
            "'tiny', a diffusers FluxPipeline / StableDiffusion3Pipeline directory, or a hub id"
        )
    name = index.get("_class_name")
    if name not in PIPELINES:
        raise ValueError(f"model.path {path!r} is a {name}; supported pipelines: {sorted(PIPELINES)}")
    return PIPELINES[name]


def _model_module(path: str):
    kind = model_kind(path)
    if kind == TINY:
        from rollout.models import tiny as module
    elif kind == "flux":
        from rollout.models import flux as module
    else:
        from rollout.models import sd3 as module
    return module


def load_policy(path: str = TINY, *, dtype: torch.dtype = torch.float32, device: str = "cpu",
                options: ModelConfig | None = None) -> Policy:
    """Load a policy (module docstring); `options` carries the rest of the model config."""
    options = options or ModelConfig(path=path)
    return _model_module(path).load(path, options, dtype=dtype).to(device)


def policy_from_config(model: ModelConfig, device: str = "cpu") -> Policy:
    """The policy `model` (a ModelConfig) describes, on `device` (the workers' factory)."""
    return load_policy(model.path, dtype=DTYPES[model.dtype], device=device, options=model)


def text_encoder_from_config(model: ModelConfig, device: str = "cpu"):
    """(model kind, the model's own text encoders on `device`) — for `raygrpo embed`, which
    loads these alone, never the transformer."""
    module = _model_module(model.path)
    return module.KIND, module.load_text_encoder(model.path, model, DTYPES[model.dtype]).to(device)
