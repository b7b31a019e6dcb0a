"""Configuration of the reward models (composed in orchestrator/config.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCORER_KINDS = (
    "alignment",
    "preference",
    "hpsv3",
    "clip",
    "imagereward",
    "ocr",
    "ocr_likelihood",
    "ocr_heldout",
    "fidelity",
)
OCR_KINDS = ("ocr", "ocr_likelihood", "ocr_heldout")
MODEL_KINDS = {  # kind -> what `path` names (an example hub id)
    "hpsv3": "the HPSv3 checkpoint: HPSv3.safetensors, its directory, or a hub id such as MizzenAI/HPSv3",
    "clip": "a transformers CLIP checkpoint, e.g. openai/clip-vit-large-patch14",
    "imagereward": "a directory or hub id holding ImageReward.pt and med_config.json, e.g. THUDM/ImageReward",
}


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ScorerConfig(Section):
    name: str = Field(description="label used in metrics (reward/<name>/mean); unique")
    kind: Literal[SCORER_KINDS] = Field(
        description="scorer implementation: alignment / preference (reward/rules.py, the shapes task), "
        "hpsv3, clip, imagereward, ocr (PP-OCRv4) / ocr_likelihood (PP-OCRv4's probability of "
        "the target) / ocr_heldout (PP-OCRv6) (reward/ocr.py, the text task: the quoted text of "
        "the prompt), fidelity (reward/fidelity.py: flat backgrounds, any task)"
    )
    weight: float = Field(1.0, description="w_m in the multi-reward aggregation")
    path: str | None = Field(
        None, description="local path or hub id of the reward model, for model-based scorers"
    )
    base: str | None = Field(
        None,
        description="hpsv3: the base VLM (config + processor; default Qwen/Qwen2-VL-7B-Instruct); "
        "imagereward: the BERT tokenizer (default bert-base-uncased)",
    )
    dtype: Literal["float32", "bfloat16", "float16"] | None = Field(
        None, description="reward-model dtype; default bfloat16 on a GPU, float32 on CPU"
    )
    batch_size: int = Field(16, ge=1, description="images per reward-model forward")
    replicas: int = Field(
        1,
        ge=1,
        description="reward workers for this scorer, each with its own num_cpus / num_gpus / threads "
        "and its own copy of the model; an iteration's images are split evenly among them, as "
        "Flow-GRPO and DanceGRPO score on every rank (bench/results/reward_replicas.md). Ray runs "
        "only: --no-ray scores in the driver",
    )
    num_gpus: float = Field(0, ge=0, description="GPU fraction of this scorer's reward worker")
    num_cpus: float = Field(
        0,
        ge=0,
        description="Ray CPU resource of this scorer's reward worker (ocr kinds: also "
        "ONNX Runtime's intra-op threads, at least 1, unless `threads` is set)",
    )
    threads: int | None = Field(
        None,
        ge=1,
        description="ocr kinds: ONNX Runtime's intra-op threads (default: num_cpus, at least 1). "
        "Above num_cpus when the scorer runs while the other actors wait (a synchronous run's "
        "scoring phase): bench/results/ocr_speed.md, 2 threads read in half the time",
    )
    detect: bool | None = Field(
        None,
        description="ocr kinds: find the text lines with the package's detector first and join "
        "their reads (Flow-GRPO's PaddleOCR det + rec). Default: detect on images taller than "
        "96 px (the real models'), read smaller ones as one line (the embedded text world's "
        "32 × 64); ocr_likelihood cannot detect (reward/ocr.py)",
    )

    @model_validator(mode="after")
    def _model_needs_path(self):
        if self.kind in MODEL_KINDS and not self.path:
            raise ValueError(
                f"reward scorer {self.name!r} (kind {self.kind}) has no path; set path to "
                f"{MODEL_KINDS[self.kind]}"
            )
        if self.detect is not None and self.kind not in OCR_KINDS:
            raise ValueError(
                f"reward scorer {self.name!r}: detect applies to the ocr kinds {OCR_KINDS}, not "
                f"{self.kind}; remove it"
            )
        if self.detect and self.kind == "ocr_likelihood":
            raise ValueError(
                f"reward scorer {self.name!r}: kind ocr_likelihood scores each image as one text line "
                "and cannot detect text; remove detect: true, or use kind ocr (which detects)"
            )
        return self


class RewardConfig(Section):
    scorers: list[ScorerConfig] = Field(
        default_factory=lambda: [
            ScorerConfig(name="preference", kind="preference"),
            ScorerConfig(name="alignment", kind="alignment"),
        ],
        description="the training rewards: `replicas` reward workers per scorer (one by default)",
    )
    aggregation: Literal["advantage", "reward"] = Field(
        "advantage",
        description="'advantage': A = Σ w_m·A_m (DanceGRPO); 'reward': normalise Σ w_m·r_m (Flow-GRPO)",
    )
    heldout: list[ScorerConfig] = Field(
        default_factory=list,
        description="held-out judges: reward workers that score only the held-out evaluations "
        "(before / after, and every orchestrator.heldout_every iterations), never the training batches; e.g. "
        "ocr_heldout and fidelity. Their weight is unused",
    )
    chunk_weights: list[dict[str, float]] | None = Field(
        None,
        description="per-chunk reward mixes w_{m,j}: one {scorer name: weight} per chunk (e.g. "
        "alignment early, preference late); replaces the scorer weights for that chunk's advantage",
    )

    @model_validator(mode="after")
    def _unique_names(self):
        names = [s.name for s in self.scorers]
        if not names:
            raise ValueError("reward.scorers is empty; configure at least one scorer")
        everyone = names + [s.name for s in self.heldout]
        dup = sorted({n for n in everyone if everyone.count(n) > 1})
        if dup:
            raise ValueError(f"reward.scorers and reward.heldout names must be unique; {dup} repeat")
        for j, mix in enumerate(self.chunk_weights or []):
            unknown = sorted(set(mix) - set(names))
            if unknown:
                raise ValueError(
                    f"reward.chunk_weights[{j}] names {unknown}, which are not in reward.scorers {names}"
                )
        return self
