"""The run configuration: each package's section composed, presets, YAML and CLI overrides.

    config = load_config("deploy/configs/tiny.yaml", ["learner.lr=3e-4", "rollout.num_workers=1"])

Layers, last wins: field defaults < the `algorithm` preset (PRESETS in orchestrator/presets.py:
the paper's official values, each with its source) < the YAML file < `key.sub=value`
overrides; a null in the file or on the command line means "not set". `config.sources`
records, per field, the layer its value came from (written to the run dir as
config_sources.yaml). Every knob stays settable. All checks run here, before any actor
starts, and each error names the field and the fix.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Literal

import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from learner.config import READ_BY, LearnerConfig, chunk_selector
from reward.config import RewardConfig
from orchestrator.errors import ConfigError  # noqa: F401 (re-exported: raised by load_config)
from orchestrator.inputs import check_config, load_yaml, yaml_value
from orchestrator.presets import ALGORITHMS, PRESETS, apply_preset  # noqa: F401 (re-exported)
from orchestrator.prompts import prompt_path
from rollout.config import ModelConfig, RolloutConfig, schedule_shift
from rollout.plan import RolloutPlan, entropy_window_plan, sde_plan, sliding_window_plan


class OrchestratorConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    iterations: int = Field(30, ge=1, description="training iterations (one rollout + update each)")
    prompts_per_iter: int = Field(
        8, ge=1, description="prompt groups per iteration (B = prompts_per_iter · group_size)"
    )
    train_prompts: str = Field(
        "tiny:train", description="prompt file (one a line), or tiny:train / tiny:text:train"
    )
    eval_prompts: str = Field(
        "tiny:heldout",
        description="held-out prompt file for before/after evaluation, or tiny:heldout / tiny:text:heldout",
    )
    seed: int = Field(0, description="run seed: prompt order, initial and SDE noise all derive from it")
    checkpoint_every: int = Field(10, ge=1, description="checkpoint every K iterations (and at the end)")
    sample_every: int = Field(1, ge=1, description="write a sample grid every K iterations")
    eval_before_after: bool = Field(
        True, description="evaluate base and final policy on eval_prompts and print the summary"
    )
    eval_samples_per_prompt: int = Field(4, ge=1)
    dashboard: bool = Field(
        True, description="serve the read-only orchestrator dashboard while the run is live"
    )
    dashboard_host: str = Field(
        "127.0.0.1",
        min_length=1,
        description="address the dashboard binds; 127.0.0.1 keeps it on this machine "
        "(reach it with ssh -L), 0.0.0.0 opens it to the network without auth",
    )
    dashboard_port: int = Field(
        8266,
        ge=0,
        le=65535,
        description="dashboard port; 0 picks a free one, and a busy port falls back to a free one "
        "(the URL is printed and recorded as dashboard_url in status.json)",
    )
    worker_niceness: int = Field(
        0,
        ge=0,
        le=19,
        description="nice value of the rollout, reward and learner actors "
        "(Ray's default for workers is 15, which lets any busy process stall their CPU threads)",
    )
    mode: Literal["sync", "async"] = Field(
        "sync",
        description="async: iteration k+1's rollouts run while the learner updates on k (samples one policy "
        "version stale; the ratio uses the log-probs stored with them)",
    )
    max_staleness: int = Field(
        1, ge=0, le=1, description="async: policy versions a rollout may lag the learner (0 = as sync)"
    )
    heldout_every: int = Field(
        0,
        ge=0,
        description="reward-hacking monitor (orchestrator/monitor.py): evaluate the policy on "
        "eval_prompts with the trained scorers and reward.heldout judges every K iterations; 0 = off",
    )
    hacking_tolerance: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="monitor: warn when the held-out training reward rose "
        "while a held-out judge fell more than this fraction below its value before training",
    )
    hacking_stop: bool = Field(False, description="monitor: checkpoint and stop the run at the first warning")

    @model_validator(mode="after")
    def _monitor_needs_eval(self):
        if self.hacking_stop and not self.heldout_every:
            raise ValueError(
                "orchestrator.hacking_stop is true but orchestrator.heldout_every is 0; set heldout_every: K "
                "(held-out evaluations every K iterations) for the monitor to run"
            )
        return self

    @model_validator(mode="after")
    def _prompt_files_exist(self):
        for field in ("train_prompts", "eval_prompts"):
            path = prompt_path(getattr(self, field))
            if not path.is_file():
                raise ValueError(
                    f"orchestrator.{field}: no file {path}; give a file with one prompt a line, or tiny:train"
                )
        return self


class Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    algorithm: Literal["dance_grpo", "chunk_grpo", "e_grpo", "flow_grpo", "mix_grpo"] = Field(
        "chunk_grpo",
        description="preset: the plan, SDE, trained steps, chunking, update schedule, clipping and "
        "advantages of that paper's official code (PRESETS; docs/algorithms.md)",
    )
    model: ModelConfig = Field(default_factory=ModelConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    learner: LearnerConfig = Field(default_factory=LearnerConfig)
    orchestrator: OrchestratorConfig = Field(default_factory=OrchestratorConfig)
    _sources: dict = PrivateAttr(
        default_factory=dict
    )  # field path -> where its value came from (load_config)

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data):
        if not isinstance(data, dict):
            return data
        return apply_preset(data)[0]

    @model_validator(mode="after")
    def _plan_is_consistent(self):
        plan = build_plan(self)  # raises ValueError naming the field (entropy windows, shift)
        check_training(self, plan)
        return self

    @model_validator(mode="after")
    def _inputs_usable(self):
        # prompt files, paths actors open, learner split (orchestrator/inputs.py)
        check_config(self, build_plan(self))
        return self

    @property
    def batch_size(self) -> int:
        return self.orchestrator.prompts_per_iter * self.rollout.group_size

    @property
    def sources(self) -> dict[str, str]:
        """Where each field's value came from: 'preset <algorithm>', 'file <path>', 'command line'
        or 'default' (filled by load_config; empty for a Config built otherwise)."""
        return dict(self._sources)


def build_plan(cfg: Config) -> RolloutPlan:
    """The rollout plan the config describes (the same on the driver and every worker; a
    sliding-window plan gives each iteration's with `plan.at(iteration)`)."""
    r = cfg.rollout
    shift = schedule_shift(cfg.model, r)
    if r.plan == "entropy_windows":
        return entropy_window_plan(
            r.num_steps,
            shift=shift,
            noise_level=r.noise_level,
            sde_kind=r.sde_kind,
            tau=r.entropy_threshold,
            active_fraction=r.branch_window,
        )
    if r.plan == "sliding_window":
        if r.num_steps < 3:
            raise ValueError(
                "rollout.plan sliding_window needs rollout.num_steps >= 3 (windows stay below N − 2), "
                f"got {r.num_steps}"
            )
        return sliding_window_plan(
            r.num_steps,
            shift=shift,
            noise_level=r.noise_level,
            sde_kind=r.sde_kind,
            size=r.sde_window,
            shift_every=r.window_shift_every,
            stride=r.window_stride,
        )
    return sde_plan(
        r.num_steps,
        shift=shift,
        noise_level=r.noise_level,
        sde_kind=r.sde_kind,
        train_last=cfg.learner.train_last_step,
    )


def check_training(cfg: Config, plan: RolloutPlan) -> None:
    """What the plan and the learner settings must agree on; each error names the field and the fix."""
    lc, chunks = cfg.learner, cfg.learner.chunks
    if plan.windows:
        if chunks.mode != "step":
            raise ValueError(
                f"learner.chunks.mode {chunks.mode!r}: an E-GRPO member trains its one window step; "
                "set learner.chunks.mode: step"
            )
    else:
        if lc.minibatch_order == "column" or lc.advantage_groups == "column":
            raise ValueError(
                "learner.minibatch_order / advantage_groups 'column' need E-GRPO's columns "
                "(rollout.plan: entropy_windows); use 'shuffled' / 'in_order' and 'prompt'"
            )
        if plan.sliding is not None and chunks.mode == "fixed":
            raise ValueError(
                "learner.chunks.mode fixed: a sliding window's length changes near the end of the grid; "
                "use mode: step, scaled, uniform or adaptive"
            )
        trained = plan.at(0).trainable.count(True)
        if trained == 0:
            raise ValueError(
                "the plan trains no transition; set learner.train_last_step or rollout.num_steps >= 2"
            )
        layout = chunk_selector(lc).layouts(torch.zeros(1, trained))[0]  # raises on sizes that do not sum
        mixes = cfg.reward.chunk_weights
        if mixes is not None:
            if chunks.mode == "adaptive" or plan.sliding is not None:
                raise ValueError(
                    "reward.chunk_weights needs the same chunks in every trajectory; use learner.chunks.mode "
                    "fixed / uniform / step with rollout.plan sde"
                )
            if len(mixes) != len(layout):
                raise ValueError(
                    f"reward.chunk_weights has {len(mixes)} mixes but the plan has {len(layout)} chunks; "
                    "give one per chunk"
                )
    members = (
        plan.members_per_group(cfg.rollout.group_size)
        if lc.advantage_groups == "prompt"
        else cfg.rollout.group_size
    )
    if lc.best_of is not None and lc.best_of > members:
        raise ValueError(f"learner.best_of {lc.best_of} exceeds the {members} members of an advantage group")


def _format(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field (a typo?); see deploy/configs/*.yaml for the fields"
        lines.append(f"  {loc}: {msg}" if loc and not msg.startswith(loc) else f"  {msg}")
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
        node[parts[-1]] = yaml_value(item, raw)
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
            raise ConfigError(
                f"config file {path} {'is a directory' if path.is_dir() else 'does not exist'}; give a "
                "YAML file, e.g. deploy/configs/tiny.yaml"
            )
        data = load_yaml(path)
    cli = parse_overrides(list(overrides))
    cfg = config_from_dict(_merge(data, cli))
    cfg._sources = field_sources(cfg, data, cli, file_label=f"file {path}")
    return cfg


def _leaves(d, prefix: tuple = ()):
    """Dotted paths of a nested dict's leaves (a list is a leaf)."""
    for k, v in d.items():
        if isinstance(v, dict) and v:
            yield from _leaves(v, prefix + (k,))
        else:
            yield prefix + (k,)


def field_sources(cfg: Config, file_data: dict, cli_data: dict, file_label: str = "file") -> dict[str, str]:
    """For every field of `cfg` (dotted path): 'command line', the file, 'preset <algorithm>' or
    'default' — the last layer that set it (null counts as unset)."""

    def present(data: dict, path: tuple, leaf: tuple) -> bool:  # set at `path`, as a value (not a section)
        node = data
        for key in path:
            if not isinstance(node, dict) or node.get(key) is None:
                return False
            node = node[key]
        return path == leaf or not isinstance(node, dict)

    user = _merge(file_data, cli_data)
    _, filled = apply_preset(user)
    out = {}
    for path in _leaves(cfg.model_dump(mode="json")):
        prefixes = [path[:i] for i in range(1, len(path) + 1)]
        if any(present(cli_data, p, path) for p in prefixes):
            out[".".join(path)] = "command line"
        elif any(present(file_data, p, path) for p in prefixes):
            out[".".join(path)] = file_label
        elif path in filled:
            out[".".join(path)] = f"preset {cfg.algorithm}: {PRESETS[cfg.algorithm][path][1]}"
        else:
            out[".".join(path)] = "default"
    return out


# rollout fields only one plan reads (rollout/plan.py)
PLAN_KNOBS = {
    "entropy_threshold": "entropy_windows",
    "branch_window": "entropy_windows",
    "sde_window": "sliding_window",
    "window_shift_every": "sliding_window",
    "window_stride": "sliding_window",
}


def _user_set(cfg: Config, *path: str):
    """(value, source) of a field the user set (file or command line) to something other than
    the preset's value (so a run's own config.yaml is not reported); None otherwise."""
    value = functools.reduce(getattr, path, cfg)
    source = cfg.sources.get(".".join(path), "default")
    preset = PRESETS.get(cfg.algorithm, {}).get(path, (None,))[0]
    return None if value is None or value == preset or source == "default" else (value, source)


def unused_settings(cfg: Config) -> list[str]:
    """Fields the user set that the run never reads — a value that looks in force but is not:
    chunk fields its chunk mode ignores (e.g. `learner.chunks.sizes` under e_grpo's one-step
    chunks), rollout fields of another plan (E-GRPO's τ under 'sde'), minibatches under order
    'column'."""
    chunks, plan, out = cfg.learner.chunks, cfg.rollout.plan, []
    for name, modes in READ_BY.items():
        if chunks.mode not in modes and (set_ := _user_set(cfg, "learner", "chunks", name)):
            out.append(
                f"learner.chunks.{name} {set_[0]} ({set_[1]}) is not used: learner.chunks.mode is "
                f"{chunks.mode!r} (algorithm {cfg.algorithm}), and only mode {' / '.join(modes)} reads it; "
                + (
                    "remove it (an E-GRPO member trains its one window step)"
                    if plan == "entropy_windows"
                    else "remove it, or set that mode"
                )
            )
    for name, reader in PLAN_KNOBS.items():
        if plan != reader and (set_ := _user_set(cfg, "rollout", name)):
            out.append(
                f"rollout.{name} {set_[0]} ({set_[1]}) is not used: rollout.plan is {plan!r} "
                f"(algorithm {cfg.algorithm}), and only plan {reader!r} reads it; remove it, or set "
                f"rollout.plan={reader}"
            )
    if cfg.learner.minibatch_order == "column" and (set_ := _user_set(cfg, "learner", "minibatches")):
        out.append(
            f"learner.minibatches {set_[0]} ({set_[1]}) is not used: learner.minibatch_order is "
            "'column' (one optimizer step per E-GRPO column); remove it, or set "
            "learner.minibatch_order=shuffled"
        )
    return out


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def dump_sources(cfg: Config) -> str:
    """config_sources.yaml: each field's origin, for the run dir beside config.yaml."""
    return yaml.safe_dump(cfg.sources, sort_keys=False, allow_unicode=True, width=10**6)
