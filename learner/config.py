"""Configuration of the learner group (composed in orchestrator/config.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ChunkConfig(Section):
    mode: Literal["step", "fixed", "uniform"] | None = Field(
        None, description="'step': chunks of one transition (DanceGRPO); 'fixed': `sizes`; 'uniform': chunks of `size`; default from `algorithm`"
    )
    sizes: list[int] | None = Field(None, description="fixed chunk sizes; must sum to the trained transitions")
    size: int | None = Field(None, ge=1, description="uniform chunk size (the last chunk takes the remainder)")

    @model_validator(mode="after")
    def _needs(self):
        if self.mode == "fixed" and not self.sizes:
            raise ValueError("learner.chunks.mode is 'fixed' but learner.chunks.sizes is not set; give e.g. sizes: [2, 3, 4, 7]")
        if self.mode == "uniform" and not self.size:
            raise ValueError("learner.chunks.mode is 'uniform' but learner.chunks.size is not set")
        return self


class LearnerConfig(Section):
    world_size: int = Field(1, ge=1, description="learner ranks (DeepSpeed data parallel), one GPU each on clusters")
    zero_stage: Literal[2, 3] = Field(2, description="DeepSpeed ZeRO stage")
    lr: float = Field(1e-4, gt=0, description="AdamW learning rate")
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = Field((0.9, 0.999))
    clip_range: float = Field(1e-4, gt=0, description="ε of the clipped ratio (log-probs are dimension-averaged, hence small)")
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping")
    minibatches: int = Field(1, ge=1, description="optimizer steps per iteration (the batch split evenly)")
    micro_batch: int = Field(16, ge=1, description="samples per forward/backward pass")
    adv_clip: float = Field(5.0, gt=0, description="advantages clipped to ±adv_clip")
    train_last_step: bool | None = Field(None, description="train the final transition (DanceGRPO never does); default from `algorithm`")
    timestep_fraction: float | None = Field(None, gt=0, le=1, description="share of trainable transitions each sample trains; default from `algorithm`")
    chunks: ChunkConfig = Field(default_factory=ChunkConfig)
    num_gpus: float = Field(0, ge=0, description="GPUs per learner rank")
    num_cpus: float = Field(0, ge=0, description="Ray CPU resource per learner rank")
    torch_threads: int = Field(2, ge=1, description="torch intra-op threads per learner rank")


def chunk_sizes(chunks: ChunkConfig, trained: int) -> list[int]:
    """Chunk sizes covering `trained` transitions for a chunk mode (errors name the fields)."""
    if chunks.mode in (None, "step"):
        return [1] * trained
    if chunks.mode == "uniform":
        sizes = [chunks.size] * (trained // chunks.size)
        rest = trained - sum(sizes)
        return sizes + [rest] if rest else sizes
    if sum(chunks.sizes) != trained:
        raise ValueError(
            f"chunk sizes {chunks.sizes} sum to {sum(chunks.sizes)} but the plan trains {trained} "
            f"transitions; set learner.chunks.sizes to sizes summing to {trained}, or use mode: uniform"
        )
    return list(chunks.sizes)
