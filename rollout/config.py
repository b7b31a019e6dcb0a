"""Configuration of the policy model and the rollout workers (composed in orchestrator/config.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rollout.sde import flux_resolution_shift

# The attention projections of FLUX's and SD3's joint blocks (Flow-GRPO's SD3 LoRA targets);
# peft matches them as name suffixes, so single blocks (no add_* projections) take what they have.
DEFAULT_LORA_TARGETS = (
    "attn.to_q",
    "attn.to_k",
    "attn.to_v",
    "attn.to_out.0",
    "attn.add_q_proj",
    "attn.add_k_proj",
    "attn.add_v_proj",
    "attn.to_add_out",
)
# FLUX's latent tokens per pixel side: 8× VAE downsampling, then 2×2 patch packing.
FLUX_PIXELS_PER_TOKEN = 16


class Section(BaseModel):
    """Base for every config section: frozen, and a typo is an error naming the field."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class LoraConfig(Section):
    rank: int = Field(32, ge=1, description="r: rank of each LoRA update")
    alpha: float = Field(64.0, gt=0, description="LoRA alpha; the update is scaled by alpha / rank")
    targets: list[str] = Field(
        list(DEFAULT_LORA_TARGETS),
        min_length=1,
        description="transformer module names (suffixes) that get LoRA adapters",
    )


class ModelConfig(Section):
    path: str = Field(
        "tiny",
        description="'tiny' (the shipped shapes-world model), a directory (raygrpo_model.json or a "
        "diffusers FluxPipeline / StableDiffusion3Pipeline with model_index.json), or a hub id such as "
        "black-forest-labs/FLUX.1-dev",
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="transformer, VAE and text-encoder dtype; step math and latents stay float32"
    )
    resolution: int | None = Field(
        None,
        ge=16,
        description="image side in pixels (square images), a multiple of 16; default: the pipeline's "
        "(1024 for FLUX.1 / SD3.5); the tiny model is fixed at 32",
    )
    guidance_scale: float | None = Field(
        None,
        ge=0,
        description="FLUX: the distilled guidance the transformer is conditioned on (default 3.5); "
        "SD3: true classifier-free guidance scale, applied in rollout and training alike (default 4.5; "
        "<= 1 turns CFG off)",
    )
    negative_prompt: str = Field("", description="SD3 CFG: the unconditional prompt")
    max_sequence_length: int | None = Field(
        None, ge=1, description="T5 tokens per prompt (default 512 for FLUX, 256 for SD3)"
    )
    finetune: Literal["full", "lora"] | None = Field(
        None,
        description="'lora': train only peft LoRA adapters (they alone are synced and checkpointed); "
        "'full': every transformer weight; default lora for FLUX / SD3, full for tiny",
    )
    lora: LoraConfig = Field(
        default_factory=LoraConfig, description="LoRA rank / alpha / target modules (finetune: lora)"
    )
    gradient_checkpointing: bool = Field(
        False, description="recompute transformer activations in backward (the learner's memory for compute)"
    )
    embeddings: str | None = Field(
        None,
        description="directory written by `raygrpo embed`: workers read prompt embeddings from it and "
        "never load the text encoders (T5)",
    )

    @model_validator(mode="after")
    def _resolution(self):
        if self.resolution is not None and self.resolution % 16:
            raise ValueError(
                f"model.resolution {self.resolution} is not a multiple of 16; use e.g. "
                f"{self.resolution // 16 * 16} or {(self.resolution // 16 + 1) * 16}"
            )
        return self


class RolloutConfig(Section):
    num_workers: int = Field(
        2, ge=1, description="rollout actors at start (`raygrpo scale` changes it while running)"
    )
    num_steps: int = Field(12, ge=2, description="N: denoising steps (transitions) per sample")
    shift: float | Literal["resolution"] = Field(
        3.0,
        description="schedule shift: σ = shift·s / (1 + (shift−1)·s); 'resolution': FLUX's "
        "resolution-dependent shift exp(μ) for model.resolution",
    )
    noise_level: float | None = Field(
        None, gt=0, description="η (dance) or a (flow) of the SDE; default from `algorithm`"
    )
    sde_kind: Literal["dance", "flow"] | None = Field(
        None, description="diffusion coefficient g, DESIGN.md §3; default from `algorithm`"
    )
    plan: Literal["sde", "entropy_windows", "sliding_window"] | None = Field(
        None,
        description="'sde': every step SDE (DanceGRPO, Chunk-GRPO, Flow-GRPO); 'entropy_windows': "
        "E-GRPO's ODE anchor and one column per active step's entropy window; 'sliding_window': "
        "MixGRPO's moving SDE window, ODE elsewhere; default from `algorithm`",
    )
    entropy_threshold: float | None = Field(
        None,
        ge=0,
        description="E-GRPO τ: an active step's window is the shortest (k, k+l) whose exp-entropy per "
        "element sqrt(2πe)·std reaches τ (0 never merges); default from `algorithm`",
    )
    branch_window: float | None = Field(
        None,
        gt=0,
        le=1,
        description="E-GRPO: active steps start in this first fraction of the schedule; default from "
        "`algorithm`",
    )
    sde_window: int | None = Field(
        None, ge=1, description="MixGRPO: SDE transitions in the sliding window; default from `algorithm`"
    )
    window_shift_every: int | None = Field(
        None,
        ge=1,
        description="MixGRPO: iterations before the window moves (iters_per_group); default from `algorithm`",
    )
    window_stride: int | None = Field(
        None,
        ge=1,
        description="MixGRPO: transitions the window moves by (prog_overlap_step); default from `algorithm`",
    )
    group_size: int = Field(8, ge=2, description="G: samples per prompt, sharing the initial noise")
    micro_batch: int = Field(64, ge=1, description="samples per transformer call in a rollout")
    num_gpus: float = Field(0, ge=0, description="GPUs per rollout worker (1 on GPU clusters)")
    num_cpus: float = Field(
        0, ge=0, description="Ray CPU resource per rollout worker (0 lets the CPU demo pack actors)"
    )
    torch_threads: int = Field(1, ge=1, description="torch intra-op threads per rollout worker")
    units_per_worker: int = Field(
        1,
        ge=1,
        description="work units (whole groups each) per worker and iteration; > 1: "
        "units go to whichever worker frees up first, so a slow worker runs fewer (work "
        "stealing; no bias: samples do not depend on the worker). Each unit needs a group: "
        "prompts_per_iter >= num_workers · units_per_worker uses them all",
    )
    weight_sync: Literal["auto", "object_store", "broadcast"] = Field(
        "auto",
        description="how weights reach the workers: 'object_store' (one ray.put per version), "
        "'broadcast' (a collective group with learner rank 0: NCCL on GPUs, gloo on CPU); 'auto': "
        "broadcast when rollout and learner have GPUs",
    )
    sync_bucket_mb: float = Field(256, gt=0, description="broadcast sync: MiB of weights per collective call")
    sync_timeout_s: float = Field(
        600, gt=0, description="broadcast sync: seconds a collective may wait for its members"
    )

    @model_validator(mode="before")
    @classmethod
    def _removed(cls, data):
        if isinstance(data, dict) and "ode_last_step" in data:
            raise ValueError(
                "rollout.ode_last_step was removed: images always decode x̂0 of the last model call (the "
                "Euler result), as every reference does, whatever the last transition is; delete the field"
            )
        return data

    @model_validator(mode="after")
    def _positive_shift(self):
        if self.shift != "resolution" and self.shift <= 0:
            raise ValueError(f"rollout.shift must be > 0 or 'resolution', got {self.shift}")
        return self


def schedule_shift(model: ModelConfig, rollout: RolloutConfig) -> float:
    """The schedule shift as a number: rollout.shift, or FLUX's exp(μ) for the image's
    latent sequence length (resolution / 16)² when rollout.shift is 'resolution'."""
    if rollout.shift != "resolution":
        return float(rollout.shift)
    if model.resolution is None:
        raise ValueError(
            "rollout.shift is 'resolution' but model.resolution is not set; set model.resolution "
            "(e.g. 512), or give rollout.shift a number"
        )
    return flux_resolution_shift((model.resolution // FLUX_PIXELS_PER_TOKEN) ** 2)
