"""Where reward-model files come from (a file, a directory, or a hub id) and in what dtype."""

from __future__ import annotations

from pathlib import Path

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_file(path: str, filename: str) -> Path:
    """`path` itself if it is a file, `path/filename` if it is a directory, else the file
    `filename` of the hub repository `path` (downloaded once into the HF cache)."""
    p = Path(path).expanduser()
    if p.is_file():
        return p
    if p.is_dir():
        if not (p / filename).is_file():
            raise FileNotFoundError(f"{p} has no {filename}; point the scorer's path at the directory holding it")
        return p / filename
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(path, filename))


def pick_dtype(name: str | None, device: str) -> torch.dtype:
    """The configured dtype, else bfloat16 on a GPU and float32 on CPU."""
    if name is not None:
        return DTYPES[name]
    return torch.bfloat16 if device == "cuda" else torch.float32
