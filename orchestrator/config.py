"""The run configuration: each package's section composed, presets, YAML and CLI overrides.

    config = load_config("deploy/configs/tiny.yaml", ["learner.lr=3e-4", "rollout.num_workers=1"])

`algorithm` fills every preset-controlled field the user left unset (DESIGN.md §6); every
knob stays settable. All checks run here, before any actor starts, and each error names
the field and the fix.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from learner.config import LearnerConfig, chunk_sizes
from reward.config import RewardConfig
from learner.chunking import chunk_sampling_weights
from rollout.config import ModelConfig, RolloutConfig, schedule_shift
from rollout.plan import RolloutPlan, entropy_branch_plan, sde_plan
from rollout.tiny import text_world, world

ALGORITHMS = ("dance_grpo", "chunk_grpo", "e_grpo")
# Defaults each algorithm gives to fields left unset; (section, field) -> value.
PRESETS: dict[str, dict[tuple[str, ...], object]] = {
    "dance_grpo": {
        ("rollout", "plan"): "sde",
        ("learner", "advantage_groups"): "prompt",
        ("rollout", "sde_kind"): "dance",
        ("rollout", "noise_level"): 0.3,
        ("learner", "train_last_step"): False,
        ("learner", "timestep_fraction"): 0.6,
        ("learner", "chunks", "mode"): "step",
    },
    "chunk_grpo": {
        ("rollout", "plan"): "sde",
        ("learner", "advantage_groups"): "prompt",
        ("rollout", "sde_kind"): "flow",
        ("rollout", "noise_level"): 0.7,
        ("learner", "train_last_step"): True,
        ("learner", "timestep_fraction"): 1.0,
        ("learner", "chunks", "mode"): "uniform",
        ("learner", "chunks", "size"): 4,
    },
    "e_grpo": {
        ("rollout", "plan"): "entropy_branch",
        ("learner", "advantage_groups"): "column",
        ("rollout", "sde_kind"): "flow",
        ("rollout", "noise_level"): 0.7,
        ("learner", "train_last_step"): False,
        ("learner", "timestep_fraction"): 1.0,
        ("learner", "chunks", "mode"): "step",
    },
}
PROMPT_ALIASES = {"tiny:train": world.prompt_file("train"), "tiny:heldout": world.prompt_file("heldout"),
                  "tiny:text:train": text_world.prompt_file("train"), "tiny:text:heldout": text_world.prompt_file("heldout")}


class OrchestratorConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    iterations: int = Field(30, ge=1, description="training iterations (one rollout + update each)")
    prompts_per_iter: int = Field(8, ge=1, description="prompt groups per iteration (B = prompts_per_iter · group_size)")
    train_prompts: str = Field("tiny:train", description="prompt file (one a line), or tiny:train / tiny:text:train")
    eval_prompts: str = Field("tiny:heldout", description="held-out prompt file for before/after evaluation, or "
                              "tiny:heldout / tiny:text:heldout")
    seed: int = Field(0, description="run seed: prompt order, initial and SDE noise all derive from it")
    checkpoint_every: int = Field(10, ge=1, description="checkpoint every K iterations (and at the end)")
    sample_every: int = Field(1, ge=1, description="write a sample grid every K iterations")
    eval_before_after: bool = Field(True, description="evaluate base and final policy on eval_prompts and print the summary")
    eval_samples_per_prompt: int = Field(4, ge=1)
    dashboard: bool = Field(True, description="serve the read-only orchestrator dashboard while the run is live")
    dashboard_host: str = Field("127.0.0.1", min_length=1,
                                description="address the dashboard binds; 127.0.0.1 keeps it on this machine "
                                            "(reach it with ssh -L), 0.0.0.0 opens it to the network without auth")
    dashboard_port: int = Field(8266, ge=0, le=65535,
                                description="dashboard port; 0 picks a free one, and a busy port falls back to a free one "
                                            "(the URL is printed and recorded as dashboard_url in status.json)")
    worker_niceness: int = Field(0, ge=0, le=19, description="nice value of the rollout, reward and learner actors "
                                 "(Ray's default for workers is 15, which lets any busy process stall their CPU threads)")
    mode: Literal["sync", "async"] = Field(
        "sync", description="async: iteration k+1's rollouts run while the learner updates on k (samples one policy "
        "version stale; the ratio uses the log-probs stored with them)")
    max_staleness: int = Field(1, ge=0, le=1, description="async: policy versions a rollout may lag the learner (0 = as sync)")
    heldout_every: int = Field(0, ge=0, description="reward-hacking monitor (orchestrator/monitor.py): evaluate the policy on "
                               "eval_prompts with the trained scorers and reward.heldout judges every K iterations; 0 = off")
    hacking_tolerance: float = Field(0.1, ge=0, lt=1, description="monitor: warn when the held-out training reward rose "
                                     "while a held-out judge fell more than this fraction below its value before training")
    hacking_stop: bool = Field(False, description="monitor: checkpoint and stop the run at the first warning")

    @model_validator(mode="after")
    def _monitor_needs_eval(self):
        if self.hacking_stop and not self.heldout_every:
            raise ValueError("orchestrator.hacking_stop is true but orchestrator.heldout_every is 0; set heldout_every: K "
                             "(held-out evaluations every K iterations) for the monitor to run")
        return self

    @model_validator(mode="after")
    def _prompt_files_exist(self):
        for field in ("train_prompts", "eval_prompts"):
            path = prompt_path(getattr(self, field))
            if not path.is_file():
                raise ValueError(f"orchestrator.{field}: no file {path}; give a file with one prompt a line, or tiny:train")
        return self


class Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    algorithm: Literal["dance_grpo", "chunk_grpo", "e_grpo"] = Field("chunk_grpo", description="preset for plan, chunking and grouping")
    model: ModelConfig = Field(default_factory=ModelConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    learner: LearnerConfig = Field(default_factory=LearnerConfig)
    orchestrator: OrchestratorConfig = Field(default_factory=OrchestratorConfig)

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data):
        if not isinstance(data, dict):
            return data
        data = copy.deepcopy(data)
        algorithm = data.get("algorithm", "chunk_grpo")
        for path, value in PRESETS.get(algorithm, {}).items():
            node = data
            for key in path[:-1]:
                node = node.setdefault(key, {})
                if not isinstance(node, dict):
                    break
            else:
                if node.get(path[-1]) is None:
                    node[path[-1]] = value
        return data

    @model_validator(mode="after")
    def _plan_is_consistent(self):
        plan = build_plan(self)  # raises ValueError naming the field (chunk sizes, timestep_fraction)
        mixes = self.reward.chunk_weights
        if mixes is not None and len(mixes) != plan.num_chunks:
            raise ValueError(f"reward.chunk_weights has {len(mixes)} mixes but the plan has {plan.num_chunks} chunks; give one per chunk")
        members = plan.members_per_group(self.rollout.group_size) if self.learner.advantage_groups == "prompt" else self.rollout.group_size
        if self.learner.best_of is not None and self.learner.best_of > members:
            raise ValueError(f"learner.best_of {self.learner.best_of} exceeds the {members} members of an advantage group")
        return self

    @property
    def batch_size(self) -> int:
        return self.orchestrator.prompts_per_iter * self.rollout.group_size


def prompt_path(value: str) -> Path:
    return Path(PROMPT_ALIASES.get(value, value)).expanduser()


def read_profile(path: str) -> dict:
    """A profile.json written by `raygrpo profile`."""
    import json

    p = Path(path).expanduser()
    if not p.is_file():
        raise ValueError(f"learner.chunks.profile: no file {p}; write one with `raygrpo profile --config ... --out DIR`")
    return json.loads(p.read_text())


def build_plan(cfg: Config) -> RolloutPlan:
    """The rollout plan the config describes (the same on the driver and every worker)."""
    r = cfg.rollout
    shift = schedule_shift(cfg.model, r)
    if r.plan == "entropy_branch":
        return entropy_branch_plan(r.num_steps, shift=shift, noise_level=r.noise_level, sde_kind=r.sde_kind,
                                   threshold=r.entropy_threshold, branch_window=r.branch_window)
    n = cfg.rollout.num_steps
    if cfg.rollout.ode_last_step and cfg.learner.train_last_step:
        raise ValueError("rollout.ode_last_step is true but learner.train_last_step is true too; "
                         "an ODE step has no log-prob to train: set learner.train_last_step: false")
    trained = n if cfg.learner.train_last_step else n - 1
    chunks = cfg.learner.chunks
    profile = read_profile(chunks.profile) if chunks.profile else None
    l1_rel = profile["l1_rel"][:trained] if profile else None
    if profile and (profile["num_steps"], profile["shift"]) != (n, shift):
        raise ValueError(f"learner.chunks.profile was made with num_steps {profile['num_steps']}, shift {profile['shift']}; "
                         f"this run uses {n}, {shift}: profile again with the same rollout settings")
    sizes = chunk_sizes(chunks, trained, l1_rel)
    weights = chunk_sampling_weights(l1_rel, sizes, chunks.temperature) if chunks.per_sample else None
    return sde_plan(
        n,
        shift=shift,
        noise_level=cfg.rollout.noise_level,
        sde_kind=cfg.rollout.sde_kind,
        train_last=cfg.learner.train_last_step,
        timestep_fraction=cfg.learner.timestep_fraction,
        chunk_sizes=sizes,
        ode_last=cfg.rollout.ode_last_step,
        chunk_weights=weights,
        chunks_per_sample=chunks.per_sample or 0,
    )


class ConfigError(ValueError):
    """A config problem, worded for the user (field path + fix)."""


def _format(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field (a typo?); see deploy/configs/*.yaml for the fields"
        lines.append(f"  {loc}: {msg}" if loc else f"  {msg}")
    return "invalid config:\n" + "\n".join(lines)


def parse_overrides(overrides: list[str]) -> dict:
    """['learner.lr=3e-4', 'rollout.num_workers=1'] -> nested dict (values parsed as YAML)."""
    out: dict = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key.sub=value")
        key, raw = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = yaml.safe_load(raw)
    return out


def _merge(base: dict, extra: dict) -> dict:
    merged = copy.deepcopy(base)
    for k, v in extra.items():
        merged[k] = _merge(merged[k], v) if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
    return merged


def config_from_dict(data: dict) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format(err)) from None


def load_config(path: str | Path | None, overrides: list[str] = ()) -> Config:
    data = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return config_from_dict(_merge(data, parse_overrides(list(overrides))))


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
