"""RewardWorker: one scorer, as a plain class (made a Ray actor in orchestrator/cluster.py).

Receives image batches (Ray resolves the rollout worker's image ref inside this process,
so the images never pass through the driver) and returns rewards [B] float32.
"""

from __future__ import annotations

import os
import time

import numpy as np

from reward.config import ScorerConfig
from reward.rules import AlignmentScorer, PreferenceScorer

SCORERS = {"alignment": AlignmentScorer, "preference": PreferenceScorer}


def build_scorer(cfg: ScorerConfig):
    return SCORERS[cfg.kind]()


class RewardWorker:
    def __init__(self, cfg: ScorerConfig):
        self.cfg = cfg
        self.scorer = build_scorer(cfg)
        self.images_done = 0
        self.seconds = 0.0

    def info(self) -> dict:
        return {"pid": os.getpid(), "node": os.uname().nodename, "scorer": self.cfg.name,
                "images": self.images_done, "seconds": self.seconds}

    def score(self, images: np.ndarray, prompts: list[str]) -> np.ndarray:
        start = time.perf_counter()
        rewards = np.asarray(self.scorer.score(images, prompts), dtype=np.float32)
        if rewards.shape != (len(images),):
            raise ValueError(f"scorer {self.cfg.name} returned shape {rewards.shape} for {len(images)} images")
        self.images_done += len(images)
        self.seconds += time.perf_counter() - start
        return rewards
