"""Configuration of the learner group (composed in orchestrator/config.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ChunkConfig(Section):
    mode: Literal["step", "fixed", "uniform", "dynamics"] | None = Field(
        None, description="'step': chunks of one transition (DanceGRPO); 'fixed': `sizes`; 'uniform': chunks of `size`; "
        "'dynamics': `num_chunks` chunks from the L1_rel curve in `profile`; default from `algorithm`"
    )
    sizes: list[int] | None = Field(None, description="fixed chunk sizes; must sum to the trained transitions")
    size: int | None = Field(None, ge=1, description="uniform chunk size (the last chunk takes the remainder)")
    profile: str | None = Field(None, description="profile.json written by `raygrpo profile` (dynamics chunks, weighted sampling)")
    num_chunks: int | None = Field(None, ge=1, description="dynamics mode: number of chunks")
    per_sample: int | None = Field(None, ge=1, description="weighted sampling: chunks each sample trains, drawn without replacement ∝ (mean L1_rel)^(1/temperature); needs `profile`")
    temperature: float = Field(1.0, gt=0, description="weighted sampling temperature")

    @model_validator(mode="after")
    def _needs(self):
        if self.mode == "dynamics" and not (self.profile and self.num_chunks):
            raise ValueError("learner.chunks.mode is 'dynamics' but learner.chunks.profile / num_chunks are not both set; "
                             "write a profile with `raygrpo profile` and name it here")
        if self.per_sample and not self.profile:
            raise ValueError("learner.chunks.per_sample (weighted chunk sampling) needs learner.chunks.profile for the chunk weights")
        if self.mode == "fixed" and not self.sizes:
            raise ValueError("learner.chunks.mode is 'fixed' but learner.chunks.sizes is not set; give e.g. sizes: [2, 3, 4, 7]")
        if self.mode == "uniform" and not self.size:
            raise ValueError("learner.chunks.mode is 'uniform' but learner.chunks.size is not set")
        return self


class LearnerConfig(Section):
    world_size: int = Field(1, ge=1, description="learner ranks (DeepSpeed data parallel), one GPU each on clusters")
    zero_stage: Literal[2, 3] = Field(2, description="DeepSpeed ZeRO stage: 2 partitions gradients and optimizer state over the "
                                      "ranks, 3 the parameters too (a full fine-tune of FLUX.1-dev needs 3: bench/memory.py)")
    offload_optimizer: bool = Field(False, description="ZeRO-Offload: keep the fp32 master weights and Adam moments in CPU "
                                    "memory and run the optimizer step there (saves 12 bytes a trainable parameter / ranks of GPU memory)")
    offload_params: bool = Field(False, description="ZeRO-3 only: keep the parameters in CPU memory between uses (ZeRO-Infinity)")
    lr: float = Field(1e-4, gt=0, description="AdamW learning rate")
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = Field((0.9, 0.999))
    clip_range: float = Field(1e-4, gt=0, description="ε of the clipped ratio (log-probs are dimension-averaged, hence small)")
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping")
    minibatches: int = Field(1, ge=1, description="optimizer steps per iteration (the batch split evenly)")
    micro_batch: int = Field(16, ge=1, description="samples per forward/backward pass")
    adv_clip: float = Field(5.0, gt=0, description="advantages clipped to ±adv_clip")
    advantage_groups: Literal["prompt", "column"] | None = Field(
        None, description="normalise advantages per prompt group, or per (prompt, branch step) column (E-GRPO); default from `algorithm`")
    best_of: int | None = Field(None, ge=2, description="DanceGRPO best-of-N: train only the top k/2 and bottom k/2 members of each group by advantage")
    kl_coef: float = Field(0.0, ge=0, description="β of the KL to the frozen base policy (exact Gaussian KL of transition means)")
    train_last_step: bool | None = Field(None, description="train the final transition (DanceGRPO never does); default from `algorithm`")
    timestep_fraction: float | None = Field(None, gt=0, le=1, description="share of trainable transitions each sample trains; default from `algorithm`")
    chunks: ChunkConfig = Field(default_factory=ChunkConfig)
    num_gpus: float = Field(0, ge=0, description="GPUs per learner rank")
    num_cpus: float = Field(0, ge=0, description="Ray CPU resource per learner rank")
    torch_threads: int = Field(2, ge=1, description="torch intra-op threads per learner rank")

    @model_validator(mode="after")
    def _offload(self):
        if self.offload_params and self.zero_stage != 3:
            raise ValueError(f"learner.offload_params needs learner.zero_stage: 3 (got {self.zero_stage}); ZeRO-2 "
                             "keeps every parameter on each GPU: set zero_stage: 3 or offload_params: false")
        return self


def chunk_sizes(chunks: ChunkConfig, trained: int, l1_rel: list[float] | None = None) -> list[int]:
    """Chunk sizes covering `trained` transitions for a chunk mode (errors name the fields).
    `l1_rel`: the profile's curve over those transitions (dynamics mode)."""
    if chunks.mode == "dynamics":
        from learner.chunking import dynamics_chunks

        if l1_rel is None or len(l1_rel) != trained:
            raise ValueError(f"learner.chunks.profile has {0 if l1_rel is None else len(l1_rel)} transitions but the "
                             f"plan trains {trained}; profile the same rollout.num_steps / shift")
        return dynamics_chunks(l1_rel, chunks.num_chunks)
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
