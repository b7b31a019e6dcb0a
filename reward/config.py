"""Configuration of the reward models (composed in orchestrator/config.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCORER_KINDS = ("alignment", "preference")


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ScorerConfig(Section):
    name: str = Field(description="label used in metrics (reward/<name>/mean); unique")
    kind: Literal["alignment", "preference"] = Field(description="scorer implementation: see reward/")
    weight: float = Field(1.0, description="w_m in the multi-reward aggregation")
    path: str | None = Field(None, description="local path or hub id of the reward model, for model-based scorers")
    num_gpus: float = Field(0, ge=0, description="GPU fraction of this scorer's reward worker")
    num_cpus: float = Field(0, ge=0, description="Ray CPU resource of this scorer's reward worker")


class RewardConfig(Section):
    scorers: list[ScorerConfig] = Field(
        default_factory=lambda: [ScorerConfig(name="preference", kind="preference"), ScorerConfig(name="alignment", kind="alignment")],
        description="one reward worker per scorer",
    )
    aggregation: Literal["advantage", "reward"] = Field(
        "advantage", description="'advantage': A = Σ w_m·A_m (DanceGRPO); 'reward': normalise Σ w_m·r_m (Flow-GRPO)"
    )
    chunk_weights: list[dict[str, float]] | None = Field(
        None, description="per-chunk reward mixes w_{m,j}: one {scorer name: weight} per chunk (e.g. alignment early, "
        "preference late); replaces the scorer weights for that chunk's advantage")

    @model_validator(mode="after")
    def _unique_names(self):
        names = [s.name for s in self.scorers]
        if not names:
            raise ValueError("reward.scorers is empty; configure at least one scorer")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"reward.scorers names must be unique; {dup} repeat")
        for j, mix in enumerate(self.chunk_weights or []):
            unknown = sorted(set(mix) - set(names))
            if unknown:
                raise ValueError(f"reward.chunk_weights[{j}] names {unknown}, which are not in reward.scorers {names}")
        return self
