"""Configuration of the policy model and the rollout workers (composed in orchestrator/config.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Section(BaseModel):
    """Base for every config section: frozen, and a typo is an error naming the field."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelConfig(Section):
    path: str = Field("tiny", description="model directory (raygrpo_model.json inside), or 'tiny' for the shipped shapes-world model")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="transformer dtype; step math and latents stay float32")


class RolloutConfig(Section):
    num_workers: int = Field(2, ge=1, description="rollout actors at start (`raygrpo scale` changes it while running)")
    num_steps: int = Field(12, ge=2, description="N: denoising steps (transitions) per sample")
    shift: float = Field(3.0, gt=0, description="schedule shift: σ = shift·s / (1 + (shift−1)·s)")
    noise_level: float | None = Field(None, gt=0, description="η (dance) or a (flow) of the SDE; default from `algorithm`")
    sde_kind: Literal["dance", "flow"] | None = Field(None, description="diffusion coefficient g, DESIGN.md §3; default from `algorithm`")
    ode_last_step: bool = Field(False, description="make the final transition deterministic (its SDE noise would stay in pixel-space images); it is then never trained")
    plan: Literal["sde", "entropy_branch"] | None = Field(
        None, description="'sde': every step SDE (DanceGRPO, Chunk-GRPO); 'entropy_branch': E-GRPO's merged steps, ODE anchor and branch columns; default from `algorithm`")
    entropy_threshold: float | Literal["adaptive"] = Field(
        "adaptive", description="E-GRPO: transition entropy a merged step must reach; 'adaptive' = the mean over steps")
    branch_window: float = Field(0.5, gt=0, le=1, description="E-GRPO: branch steps are merged steps starting in this first fraction of the schedule")
    group_size: int = Field(8, ge=2, description="G: samples per prompt, sharing the initial noise")
    micro_batch: int = Field(64, ge=1, description="samples per transformer call in a rollout")
    num_gpus: float = Field(0, ge=0, description="GPUs per rollout worker (1 on GPU clusters)")
    num_cpus: float = Field(0, ge=0, description="Ray CPU resource per rollout worker (0 lets the CPU demo pack actors)")
    torch_threads: int = Field(1, ge=1, description="torch intra-op threads per rollout worker")
    weight_sync: Literal["auto", "object_store", "broadcast"] = Field(
        "auto", description="how weights reach the workers: 'object_store' (one ray.put per version), 'broadcast' "
        "(a collective group with learner rank 0: NCCL on GPUs, gloo on CPU); 'auto': broadcast when rollout and learner have GPUs")
    sync_bucket_mb: float = Field(256, gt=0, description="broadcast sync: MiB of weights per collective call")
    sync_timeout_s: float = Field(600, gt=0, description="broadcast sync: seconds a collective may wait for its members")
