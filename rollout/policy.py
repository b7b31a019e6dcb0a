"""Policy loading: a diffusers flow transformer + text encoders + decoder, behind one interface.

    policy.encode(prompts)            -> Conditioning on the policy's device, cached per prompt
                                         (text encoders frozen; the cache is an LRU in CPU memory)
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

import contextlib
import json
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from rollout.config import ModelConfig
from rollout.weight_sync import state_checksum

TINY = "tiny"  # `model.path: tiny` means the shipped embedded model
TINY_SHIPPED = (TINY, "tiny:text")  # the shipped shapes and text-world models (rollout.models.tiny)
PIPELINES = {"FluxPipeline": "flux", "StableDiffusion3Pipeline": "sd3"}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


@dataclass
class Conditioning:
    """Text conditioning of a batch: named batch-first tensors in the text encoder's dtype (the
    transformer casts them to its own), e.g. for FLUX prompt_embeds [B, T, D] and pooled [B, D].
    Which names a model needs is its own affair."""

    tensors: dict[str, torch.Tensor]

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.tensors[name]

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def take(self, index: torch.Tensor | list[int]) -> "Conditioning":
        return Conditioning({k: v[index] for k, v in self.tensors.items()})


class TextEncoder(Protocol):
    """Frozen prompt encoder: prompts -> {name: [B, ...] tensor} (any dtype, any device)."""

    def __call__(self, prompts: list[str]) -> dict[str, torch.Tensor]: ...


class Policy(torch.nn.Module):
    """A flow-matching text-to-image policy; `transformer` holds every trainable weight.

    Subclasses give `latent_shape`, `velocity` and `decode`; this base holds the prompt
    cache, the device, and the weights that move between learner and rollout workers."""

    # Prompt-cache budget: FLUX's T5 embedding of one prompt is 512 × 4096 bf16 = 4 MiB, so
    # 1 GiB of CPU memory holds ~250 prompts (a few iterations' worth; the rest is re-read).
    cache_bytes = 1 << 30

    def __init__(self, transformer: torch.nn.Module, text_encoder: TextEncoder, dtype: torch.dtype,
                 trainable_names: list[str] | None = None):
        super().__init__()
        self.transformer = transformer
        self.text_encoder = text_encoder  # an nn.Module (moves with .to()) or a cache reader
        self.dtype = dtype
        # Full fine-tuning trains every transformer weight; LoRA lists only its adapters.
        self.trainable_names = trainable_names or [n for n, _ in transformer.named_parameters()]
        self.register_buffer("_anchor", torch.zeros(0), persistent=False)  # follows .to(device)
        self._cache: OrderedDict[str, dict[str, torch.Tensor]] = OrderedDict()  # prompt -> CPU tensors, LRU order
        self._cache_used = 0

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
        """Conditioning [B, ...] of `prompts` on the policy's device. Each prompt is encoded once
        and kept in a least-recently-used cache of at most `cache_bytes`, in CPU memory and the
        encoder's dtype; only the batch moves to the device."""
        missing = list(dict.fromkeys(p for p in prompts if p not in self._cache))
        out = self.text_encoder(missing) if missing else {}
        fresh = {p: {k: v[i].to("cpu", copy=True) for k, v in out.items()} for i, p in enumerate(missing)}
        rows = [fresh.get(p) or self._cache[p] for p in prompts]  # before any eviction below
        for p in prompts:
            if p in self._cache:
                self._cache.move_to_end(p)
        for p, tensors in fresh.items():
            self._cache[p] = tensors
            self._cache_used += sum(t.nbytes for t in tensors.values())
        while self._cache_used > self.cache_bytes and len(self._cache) > 1:
            _, dropped = self._cache.popitem(last=False)
            self._cache_used -= sum(t.nbytes for t in dropped.values())
        return Conditioning({k: torch.stack([r[k] for r in rows]).to(self.device)
                             for k in rows[0]})

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

    @property
    def has_adapters(self) -> bool:
        """True when the transformer carries peft LoRA adapters (model.finetune: lora)."""
        return bool(getattr(self.module, "peft_config", None))

    @contextlib.contextmanager
    def adapters_disabled(self):
        """The base model for the duration (LoRA adapters off): the frozen KL reference under LoRA,
        with no second copy of the transformer."""
        self.module.disable_adapters()
        try:
            yield
        finally:
            self.module.enable_adapters()

    # -- weights moving between learner and rollout workers -------------------------------
    def trainable_tensors(self) -> dict[str, torch.Tensor]:
        """Every trainable transformer weight, where it lives (no copy): what a broadcast sends
        from and receives into, and what `checksum` reads."""
        params = dict(self.module.named_parameters())
        return {k: params[k].detach() for k in self.trainable_names}

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """CPU copies of every trainable transformer weight (object-store sync, checkpoints)."""
        return {k: v.to("cpu", copy=True) for k, v in self.trainable_tensors().items()}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        params = dict(self.module.named_parameters())
        unknown = sorted(set(state) - set(params))
        if unknown:
            raise KeyError(f"weights for unknown parameters {unknown[:3]}")
        with torch.no_grad():
            for k, v in state.items():
                params[k].copy_(v)

    def checksum(self) -> str:
        """`state_checksum` of the trainable weights, computed on their device (no copy)."""
        return state_checksum(self.trainable_tensors())

    @staticmethod
    def state_checksum(state: dict[str, torch.Tensor]) -> str:
        """Checksum of a weight state on any device (rollout.weight_sync: exact integer sums)."""
        return state_checksum(state)


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
    # built in `dtype` on `device` directly (12 B float32 parameters would be 47 GB); .to() moves the rest
    return _model_module(path).load(path, options, dtype=dtype, device=device).to(device)


def policy_from_config(model: ModelConfig, device: str = "cpu") -> Policy:
    """The policy `model` (a ModelConfig) describes, on `device` (the workers' factory)."""
    return load_policy(model.path, dtype=DTYPES[model.dtype], device=device, options=model)


def text_encoder_from_config(model: ModelConfig, device: str = "cpu"):
    """(model kind, the model's own text encoders on `device`) — for `raygrpo embed`, which
    loads these alone, never the transformer."""
    module = _model_module(model.path)
    return module.KIND, module.load_text_encoder(model.path, model, DTYPES[model.dtype]).to(device)
