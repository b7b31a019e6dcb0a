"""RewardWorker: one scorer, as a plain class (made a Ray actor in orchestrator/cluster.py).

Receives image batches (Ray resolves the rollout worker's image ref inside this process,
so the images never pass through the driver) and returns rewards [B] float32. Model-based
scorers run on this worker's GPU (fraction) when it has one, in batches of `batch_size`.

Every scorer has one protocol: `scorer.name`, and
    scorer.score(images: uint8 [B, H, W, 3], prompts: list[str]) -> float32 [B]
"""

from __future__ import annotations

import importlib
import os
import time
import warnings

import numpy as np

from reward.config import ScorerConfig
from reward.fidelity import FidelityScorer
from reward.rules import AlignmentScorer, PreferenceScorer


def _hpsv3(cfg: ScorerConfig, device: str):
    from reward.hpsv3 import HPSv3Scorer

    return HPSv3Scorer(cfg.path, base=cfg.base, device=device, dtype=cfg.dtype, batch_size=cfg.batch_size)


def _clip(cfg: ScorerConfig, device: str):
    from reward.clip import CLIPScorer

    return CLIPScorer(cfg.path, device=device, dtype=cfg.dtype, batch_size=cfg.batch_size)


def _imagereward(cfg: ScorerConfig, device: str):
    from reward.imagereward import ImageRewardScorer

    return ImageRewardScorer(
        cfg.path, base=cfg.base, device=device, dtype=cfg.dtype, batch_size=cfg.batch_size
    )


def _ocr(cfg: ScorerConfig, device: str):
    from reward.ocr import PPOCRv4LikelihoodScorer, PPOCRv4Scorer, PPOCRv6Scorer

    scorer = {"ocr": PPOCRv4Scorer, "ocr_likelihood": PPOCRv4LikelihoodScorer}.get(cfg.kind, PPOCRv6Scorer)
    return scorer(
        batch_size=cfg.batch_size, threads=cfg.threads or max(1, int(cfg.num_cpus)), detect=cfg.detect
    )


# kind -> factory(cfg, device); the model scorers import transformers / onnxruntime only when built
SCORERS = {
    "alignment": lambda cfg, device: AlignmentScorer(),
    "preference": lambda cfg, device: PreferenceScorer(),
    "hpsv3": _hpsv3,
    "clip": _clip,
    "imagereward": _imagereward,
    "ocr": _ocr,
    "ocr_likelihood": _ocr,
    "ocr_heldout": _ocr,
    "fidelity": lambda cfg, device: FidelityScorer(),
}


# kind -> its scorer class as "module:Class", imported only to look up the class's prompt hook
# (the model scorers' modules import torch, not transformers, at the top)
SCORER_CLASSES = {
    "alignment": "reward.rules:AlignmentScorer",
    "preference": "reward.rules:PreferenceScorer",
    "hpsv3": "reward.hpsv3:HPSv3Scorer",
    "clip": "reward.clip:CLIPScorer",
    "imagereward": "reward.imagereward:ImageRewardScorer",
    "ocr": "reward.ocr:PPOCRv4Scorer",
    "ocr_likelihood": "reward.ocr:PPOCRv4LikelihoodScorer",
    "ocr_heldout": "reward.ocr:PPOCRv6Scorer",
    "fidelity": "reward.fidelity:FidelityScorer",
}


def scorer_class(kind: str) -> type:
    module, name = SCORER_CLASSES[kind].split(":")
    return getattr(importlib.import_module(module), name)


def validate_prompts(cfg: ScorerConfig, prompts: list[str]) -> None:
    """Raise ValueError if scorer `cfg` cannot score `prompts`; loads no model (the driver calls
    it on the prompt files before any actor starts). The check is the scorer class's own hook,

        @staticmethod
        def validate_prompts(prompts: list[str]) -> None   # ValueError naming the first bad prompt

    when the class defines one (alignment: its grammar; the OCR kinds: a quoted text); a class
    without it reads any prompt (the model scorers: their tokenizers truncate)."""
    hook = getattr(scorer_class(cfg.kind), "validate_prompts", None)
    if hook is not None:
        hook(prompts)


def device_of(num_gpus: float) -> str:
    """'cuda' when this worker was given a GPU (fraction) and one is visible, else 'cpu' (with a
    warning when a GPU was asked for), decided inside the actor. torch is imported only for model
    scorers: a rule-based reward worker starts without it."""
    if num_gpus <= 0:
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    warnings.warn(
        f"reward scorer num_gpus is {num_gpus} but this actor sees no CUDA device; it runs on the CPU",
        stacklevel=2,
    )
    return "cpu"


def build_scorer(cfg: ScorerConfig):
    return SCORERS[cfg.kind](cfg, device_of(cfg.num_gpus))


class RewardWorker:
    def __init__(self, cfg: ScorerConfig):
        self.cfg = cfg
        self.scorer = build_scorer(cfg)
        self.images_done = 0
        self.seconds = 0.0

    def info(self) -> dict:
        return {
            "pid": os.getpid(),
            "node": os.uname().nodename,
            "scorer": self.cfg.name,
            "images": self.images_done,
            "seconds": self.seconds,
        }

    def score_rows(self, images: np.ndarray, prompts: list[str], start: int) -> np.ndarray:
        """Rewards of the rows [start, start + len(prompts)) of a rollout batch's `images` (this
        worker's share when a scorer has replicas: orchestrator/cluster.py `shares`)."""
        return self.score(images[start : start + len(prompts)], prompts)

    def score(self, images: np.ndarray, prompts: list[str]) -> np.ndarray:
        start = time.perf_counter()
        if len(prompts) != len(images):
            raise ValueError(f"scorer {self.cfg.name} got {len(prompts)} prompts for {len(images)} images")
        rewards = np.asarray(self.scorer.score(images, prompts), dtype=np.float32)
        if rewards.shape != (len(images),):
            raise ValueError(
                f"scorer {self.cfg.name} returned shape {rewards.shape} for {len(images)} images"
            )
        self.images_done += len(images)
        self.seconds += time.perf_counter() - start
        return rewards
