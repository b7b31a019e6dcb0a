"""Policy loading: which model family a `model.path` holds, and the policy it loads.

`load_policy(path)` dispatches on what `path` holds:
    'tiny', 'tiny:text', or a directory with raygrpo_model.json (kind 'tiny') -> rollout.models.tiny
    a diffusers pipeline (model_index.json, local or a hub id):
        _class_name FluxPipeline                                -> rollout.models.flux
        _class_name StableDiffusion3Pipeline                    -> rollout.models.sd3
Each family implements the Policy interface of `rollout.models.base` (encode, velocity,
decode, latent_shape): a diffusers flow transformer + text encoders + decoder. With
`model.embeddings` set, the text encoders are never loaded: prompt embeddings come from
the cache `raygrpo embed` wrote (rollout.embeddings).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from rollout.config import ModelConfig
from rollout.models.base import Policy

TINY = "tiny"  # `model.path: tiny` means the shipped embedded model
TINY_SHIPPED = (TINY, "tiny:text")  # the shipped shapes and text-world models (rollout.models.tiny)
PIPELINES = {"FluxPipeline": "flux", "StableDiffusion3Pipeline": "sd3"}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


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


def load_policy(
    path: str = TINY,
    *,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
    options: ModelConfig | None = None,
) -> Policy:
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
