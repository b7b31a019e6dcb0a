"""The Policy interface every model family implements (rollout/models/tiny.py, flux.py, sd3.py).

    policy.encode(prompts)            -> Conditioning on the policy's device, cached per prompt
                                         (text encoders frozen; the cache is an LRU in CPU memory)
    policy.velocity(x, sigma, cond)   -> float32 velocity, same shape as x
    policy.decode(x0)                 -> uint8 images [B, H, W, 3]
    policy.latent_shape               -> shape of one sample's latent, e.g. (64, 48)

The sampler (`rollout.sampler`) and the learner call exactly these, so a rollout and its
recomputation see the same numbers. The transformer runs in `dtype` (bf16 on GPUs); the
velocity is returned in float32 because the SDE step and log-prob are float32.
`rollout.policy.load_policy` picks the family and loads it.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from rollout.weight_sync import state_checksum


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

    def select(self, index: torch.Tensor | list[int]) -> "Conditioning":
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

    def __init__(
        self,
        transformer: torch.nn.Module,
        text_encoder: TextEncoder,
        dtype: torch.dtype,
        trainable_names: list[str] | None = None,
    ):
        super().__init__()
        # No cuDNN fused attention in a process that holds a policy: on an H200 (torch 2.11+cu130,
        # cuDNN 9.19) its backward over FLUX's 720² sequence (2025 + 512 tokens) hit an illegal
        # memory access, while flash, memory-efficient and math attention ran the same step
        # (docs/gpu.md). A process-wide switch, so gradient checkpointing's recompute inside the
        # backward picks the same kernels, and the rollout's and the learner's log-probabilities
        # come from the same attention kernels.
        torch.backends.cuda.enable_cudnn_sdp(False)
        self.transformer = transformer
        self.text_encoder = text_encoder  # an nn.Module (moves with .to()) or a cache reader
        self.dtype = dtype
        # Full fine-tuning trains every transformer weight; LoRA lists only its adapters.
        self.trainable_names = trainable_names or [n for n, _ in transformer.named_parameters()]
        self.register_buffer("_anchor", torch.zeros(0), persistent=False)  # follows .to(device)
        self._cache: OrderedDict[str, dict[str, torch.Tensor]] = (
            OrderedDict()
        )  # prompt -> CPU tensors, LRU order
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
        return Conditioning({k: torch.stack([r[k] for r in rows]).to(self.device) for k in rows[0]})

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
