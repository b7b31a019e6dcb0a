"""What the model scorers (CLIP, ImageReward, HPSv3) share: where their files come from (a
file, a directory, or a hub id), the dtype they load in, and the batched scoring loop
(`ModelScorer`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from reward.preprocess import batches, to_pil

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_file(path: str, filename: str) -> Path:
    """`path` itself if it is a file, `path/filename` if it is a directory, else the file
    `filename` of the hub repository `path` (downloaded once into the HF cache)."""
    p = Path(path).expanduser()
    if p.is_file():
        return p
    if p.is_dir():
        if not (p / filename).is_file():
            raise FileNotFoundError(
                f"{p} has no {filename}; point the scorer's path at the directory holding it"
            )
        return p / filename
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(path, filename))


def pick_dtype(name: str | None, device: str) -> torch.dtype:
    """The configured dtype, else bfloat16 on a GPU and float32 on CPU."""
    if name is not None:
        return DTYPES[name]
    return torch.bfloat16 if device == "cuda" else torch.float32


class ModelScorer:
    """Base of the model scorers: `device`, `dtype` (pick_dtype) and the scoring loop — images
    to PIL, `batch_size` at a time through the model's `score_batch`, rewards back on the host.
    Subclasses load their model in `__init__` (after this one's) and give `score_batch`."""

    name: str

    def __init__(self, device: str = "cpu", dtype: str | None = None, batch_size: int = 16):
        self.device, self.batch_size = device, batch_size
        self.dtype = pick_dtype(dtype, device)

    @torch.no_grad()
    def score(self, images: np.ndarray, prompts: list[str]) -> np.ndarray:
        """uint8 [B, H, W, 3] + B prompts -> rewards float32 [B]."""
        pil = to_pil(images)
        out = [self.score_batch(pil[sl], prompts[sl]).cpu() for sl in batches(len(pil), self.batch_size)]
        return torch.cat(out).numpy().astype(np.float32)

    def score_batch(self, images: list, prompts: list[str]) -> torch.Tensor:
        """b PIL images + b prompts -> rewards [b] (on the model's device)."""
        raise NotImplementedError
