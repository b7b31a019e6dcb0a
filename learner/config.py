"""Configuration of the learner group (composed in orchestrator/config.py).

Fields a preset fills (orchestrator/presets.py PRESETS, each value with its source) say
"default from `algorithm`": the preset's value applies whenever the file and the command line
leave them out (or null); the defaults written here only serve code that builds a section
directly, without a preset.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


READ_BY = {"sizes": ("fixed", "scaled"), "size": ("uniform",)}  # chunk field -> the modes that read it


class ChunkConfig(Section):
    mode: Literal["step", "fixed", "scaled", "uniform", "adaptive"] | None = Field(
        "step",
        description="chunks of the trainable transitions: 'step' (one each: DanceGRPO, Flow-GRPO, "
        "MixGRPO), 'fixed' (`sizes`, summing to them), 'scaled' (`sizes`' boundaries scaled to them: "
        "GCPO's [2, 3, 4, 7] on any grid), 'uniform' (`size`), 'adaptive' (from each trajectory's "
        "L1_rel, GCPO v3 §4.3); default from `algorithm`",
    )
    sizes: list[int] | None = Field(
        None,
        description="fixed chunk sizes in step order, summing to the trainable transitions, "
        "e.g. [2, 3, 4, 7]",
    )
    size: int | None = Field(
        None, ge=1, description="uniform chunk size (the last chunk takes the remainder)"
    )
    stop_size: int = Field(
        5, ge=1, description="adaptive: a segment of at most this many steps is not split further"
    )
    weighting: Literal["uniform", "normalized", "softmax"] | None = Field(
        "uniform",
        description="which chunks a trajectory trains: 'uniform' (a random subset), or drawn ∝ its "
        "chunks' mean L1_rel, 'normalized' or 'softmax' (GCPO's --sample_weight); default from "
        "`algorithm`",
    )

    @model_validator(mode="before")
    @classmethod
    def _removed(cls, data):
        gone = (
            sorted({"profile", "num_chunks", "per_sample", "temperature"} & set(data or {}))
            if isinstance(data, dict)
            else []
        )
        if gone:
            raise ValueError(
                f"learner.chunks.{gone[0]} was removed with the 'dynamics' mode and `raygrpo profile`: "
                "use mode: adaptive (per-trajectory chunks) and weighting: normalized for weighted sampling"
            )
        return data

    @model_validator(mode="after")
    def _needs(self):
        if self.mode in READ_BY["sizes"] and not self.sizes:
            raise ValueError(
                f"learner.chunks.mode is '{self.mode}' but learner.chunks.sizes is not set; "
                "give e.g. sizes: [2, 3, 4, 7]"
            )
        if self.mode in READ_BY["size"] and not self.size:
            raise ValueError("learner.chunks.mode is 'uniform' but learner.chunks.size is not set")
        return self


class LearnerConfig(Section):
    world_size: int = Field(
        1, ge=1, description="learner ranks (DeepSpeed data parallel), one GPU each on clusters"
    )
    zero_stage: Literal[2, 3] = Field(
        2,
        description="DeepSpeed ZeRO stage: 2 partitions gradients and optimizer state over the "
        "ranks, 3 the parameters too (a full fine-tune of FLUX.1-dev needs 3: bench/memory.py)",
    )
    offload_optimizer: bool = Field(
        False,
        description="ZeRO-Offload: keep the fp32 master weights and Adam moments in CPU "
        "memory and run the optimizer step there (saves 12 bytes a trainable parameter / ranks "
        "of GPU memory)",
    )
    offload_params: bool = Field(
        False, description="ZeRO-3 only: keep the parameters in CPU memory between uses (ZeRO-Infinity)"
    )
    lr: float = Field(
        1e-4, gt=0, description="AdamW learning rate (constant, no warm-up, as in every reference)"
    )
    weight_decay: float | None = Field(0.0, ge=0, description="AdamW weight decay; default from `algorithm`")
    betas: tuple[float, float] = Field((0.9, 0.999))
    clip_range: float | None = Field(
        1e-4,
        gt=0,
        description="ε (lower side) of the clipped ratio (log-probs are dimension-averaged, hence "
        "small); default from `algorithm`",
    )
    clip_range_high: float | None = Field(
        None, gt=0, description="ε of the upper side; null: the same as clip_range"
    )
    max_grad_norm: float | None = Field(
        1.0, gt=0, description="gradient-norm clipping per optimizer step; default from `algorithm`"
    )
    minibatches: int | None = Field(
        1,
        ge=1,
        description="optimizer steps per rollout batch (orders 'shuffled' and 'in_order'); "
        "default from `algorithm`",
    )
    epochs: int = Field(
        1,
        ge=1,
        description="passes over each rollout batch (PPO inner epochs; every reference: 1, "
        "flow_grpo config/base.py train.num_inner_epochs); each pass reshuffles 'shuffled' "
        "minibatches, and the clipped ratio bounds how far later passes move the policy",
    )
    minibatch_order: Literal["shuffled", "in_order", "column"] | None = Field(
        "shuffled",
        description="how the batch becomes minibatches: 'shuffled' (a random permutation: GCPO, "
        "Flow-GRPO), 'in_order' (members m·G/M… of every group: DanceGRPO, MixGRPO), 'column' "
        "(one step per E-GRPO column); default from `algorithm` (learner/schedule.py)",
    )
    micro_batch: int = Field(
        16, ge=1, description="model inputs per forward/backward pass (a chunk is never split)"
    )
    adv_clip: float = Field(5.0, gt=0, description="advantages clipped to ±adv_clip (every reference: 5)")
    advantage_groups: Literal["prompt", "column"] | None = Field(
        None,
        description="normalise advantages per prompt group, or per (prompt, active step) column "
        "(E-GRPO); default from `algorithm`",
    )
    advantage_std: Literal["group", "batch"] | None = Field(
        "group",
        description="'group': the group's unbiased std + 1e-8; 'batch': the whole batch's std + 1e-4 "
        "(Flow-GRPO's global_std); default from `algorithm`",
    )
    best_of: int | None = Field(
        None,
        ge=2,
        description="DanceGRPO best-of-N: train only the top k/2 and bottom k/2 members of each "
        "group by advantage",
    )
    kl_coef: float | None = Field(
        0.0,
        ge=0,
        description="β of the KL to the frozen base policy (exact Gaussian KL of transition means); "
        "default from `algorithm`",
    )
    train_last_step: bool | None = Field(
        False, description="the final transition may be trained (no reference does); default from `algorithm`"
    )
    timestep_fraction: float | None = Field(
        1.0,
        gt=0,
        le=1,
        description="a trajectory with K chunks trains max(1, int(K·f)) of them (DanceGRPO 0.6 of "
        "its steps, GCPO 0.5 of its chunks); default from `algorithm`",
    )
    chunks: ChunkConfig = Field(default_factory=ChunkConfig)
    num_gpus: float = Field(0, ge=0, description="GPUs per learner rank")
    num_cpus: float = Field(0, ge=0, description="Ray CPU resource per learner rank")
    torch_threads: int = Field(2, ge=1, description="torch intra-op threads per learner rank")

    @model_validator(mode="after")
    def _offload(self):
        if self.offload_params and self.zero_stage != 3:
            raise ValueError(
                f"learner.offload_params needs learner.zero_stage: 3 (got {self.zero_stage}); ZeRO-2 "
                "keeps every parameter on each GPU: set zero_stage: 3 or offload_params: false"
            )
        return self


def chunk_selector(learner: LearnerConfig):
    """The ChunkSelector the rollout workers apply after each rollout (learner.chunking)."""
    from learner.chunking import ChunkSelector

    c = learner.chunks
    return ChunkSelector(
        mode=c.mode or "step",
        sizes=tuple(c.sizes or ()),
        size=c.size or 0,
        stop_size=c.stop_size,
        fraction=learner.timestep_fraction or 1.0,
        weighting=c.weighting or "uniform",
    )
