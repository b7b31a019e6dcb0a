"""The run configuration: each package's section composed, presets, YAML and CLI overrides.

    config = load_config("deploy/configs/tiny.yaml", ["learner.lr=3e-4", "rollout.num_workers=1"])

Layers, last wins: field defaults < the `algorithm` preset (PRESETS: the paper's official
values, each with its source) < the YAML file < `key.sub=value` overrides; a null in the file
or on the command line means "not set". `config.sources` records, per field, the layer its
value came from (written to the run dir as config_sources.yaml). Every knob stays settable.
All checks run here, before any actor starts, and each error names the field and the fix.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Literal

import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from learner.config import LearnerConfig, chunk_selector
from reward.config import RewardConfig
from orchestrator.errors import ConfigError  # noqa: F401 (re-exported: raised by load_config)
from orchestrator.inputs import check_config, load_yaml, yaml_value
from orchestrator.prompts import prompt_path
from rollout.config import ModelConfig, RolloutConfig, schedule_shift
from rollout.plan import RolloutPlan, entropy_window_plan, sde_plan, sliding_window_plan

ALGORITHMS = ("dance_grpo", "chunk_grpo", "e_grpo", "flow_grpo", "mix_grpo")
# The defaults each algorithm gives, as its paper and official code run it; (section, field) ->
# (value, source). A preset fills the fields the file and the command line leave out (or null);
# docs/algorithms.md restates each algorithm and what we do differently. Commits:
DANCE = "XueZeyue/DanceGRPO@15cc71d"  # scripts/finetune/finetune_flux_grpo.sh = the 16-GPU default
GCPO = "xingzhejun/GCPO@ea6cc4d"  # scripts/finetune/finetune_hpsv3_chunk.sh, paper Table 8
EGRPO = "shengjun-zhang/VisualGRPO@ae619bf"  # fastvideo/config/config.yaml + E-GRPO paper §4.1
FLOW = "yifan123/flow_grpo@ac4c86e"  # config/base.py + config/grpo.py (geneval_sd3 / general_ocr_sd3)
MIX = "Tencent-Hunyuan/MixGRPO@e5cdd6a"  # scripts/finetune/finetune_flux_grpo_MixGRPO.sh
_COMMON = {  # the same in all five references
    ("learner", "weight_decay"): (1e-4, "every reference: --weight_decay 0.0001 / adam_weight_decay 1e-4"),
    ("learner", "advantage_groups"): ("prompt", "every reference but E-GRPO: z-scores per prompt group"),
    ("learner", "advantage_std"): ("group", "per-group unbiased std + 1e-8"),
    ("learner", "train_last_step"): (False, "no reference trains the last transition"),
    ("learner", "kl_coef"): (0.0, "no KL term"),
    ("learner", "chunks", "mode"): ("step", "chunks of one transition (step-level GRPO)"),
    ("learner", "chunks", "weighting"): ("uniform", "a uniformly random subset of the trainable steps"),
    ("learner", "max_grad_norm"): (1.0, "--max_grad_norm 1.0"),
    ("learner", "clip_range"): (1e-4, "--clip_range 1e-4"),
}
PRESETS: dict[str, dict[tuple[str, ...], tuple[object, str]]] = {
    "dance_grpo": {
        **_COMMON,
        ("rollout", "plan"): (
            "sde",
            f"{DANCE} fastvideo/train_grpo_flux.py:250: every step flux_step(sde_solver=True)",
        ),
        ("rollout", "sde_kind"): ("dance", f"{DANCE} fastvideo/train_grpo_flux.py:131-171: g = eta"),
        ("rollout", "noise_level"): (0.3, f"{DANCE} finetune_flux_grpo.sh:46 --eta 0.3"),
        ("learner", "timestep_fraction"): (
            0.6,
            f"{DANCE} finetune_flux_grpo.sh:56; int(15·0.6) = 9 of 15 steps, train_grpo_flux.py:570",
        ),
        ("learner", "minibatches"): (
            3,
            f"{DANCE} finetune_flux_grpo.sh:29,34,52: 1 prompt × 12 per rank, a step every A = 4 samples (train_grpo_flux.py:609)",
        ),
        ("learner", "minibatch_order"): (
            "in_order",
            f"{DANCE} train_grpo_flux.py:571: samples in order, not shuffled",
        ),
        ("reward", "aggregation"): ("advantage", "DanceGRPO paper §3: advantages per reward model, summed"),
    },
    "chunk_grpo": {
        **_COMMON,
        ("rollout", "plan"): (
            "sde",
            f"{GCPO} fastvideo/train_grpo_flux_hpsv3.py:184: every step flow_grpo_step (step_end_idx 100)",
        ),
        ("rollout", "sde_kind"): (
            "flow",
            f"{GCPO} train_grpo_flux_hpsv3.py flow_grpo_step: g = eta·sqrt(σ/(1−σ'))",
        ),
        ("rollout", "noise_level"): (0.7, f"{GCPO} finetune_hpsv3_chunk.sh:27 --eta 0.7"),
        ("learner", "chunks", "mode"): (
            "scaled",
            "the release's default fixed list (--new_fix_chunk), its boundaries "
            "scaled to the grid's trainable steps: itself on GCPO's 16, [1, 2, 3, 5] on the "
            "tiny model's 11. Chosen over the v3 paper's adaptive chunks (mode: adaptive) "
            "by bench/results/chunking.md on the shapes task",
        ),
        ("learner", "chunks", "sizes"): (
            [2, 3, 4, 7],
            f"{GCPO} finetune_hpsv3_chunk.sh:46 --new_chunk_list '[2, 3, 4, 7]'",
        ),
        ("learner", "timestep_fraction"): (
            0.5,
            f"{GCPO} finetune_hpsv3_chunk.sh:36; int(K·0.5) chunks, train_grpo_flux_hpsv3.py:662",
        ),
        ("learner", "clip_range"): (
            5e-5,
            f"{GCPO} finetune_hpsv3_chunk.sh:39,42 --clip_range = --right_clip_range 5e-5",
        ),
        ("learner", "max_grad_norm"): (0.01, f"{GCPO} finetune_hpsv3_chunk.sh:30 --max_grad_norm 0.01"),
        ("learner", "minibatches"): (
            2,
            f"{GCPO} finetune_hpsv3_chunk.sh:11,16: 2 prompts × 12 per rank, A = 12 -> 2 steps",
        ),
        ("learner", "minibatch_order"): (
            "shuffled",
            f"{GCPO} train_grpo_flux_hpsv3.py:673: torch.randperm over the rank's samples",
        ),
        ("reward", "aggregation"): (
            "advantage",
            "GCPO trains one reward model; advantage-level when several",
        ),
    },
    "e_grpo": {
        **_COMMON,
        ("rollout", "plan"): ("entropy_windows", "E-GRPO paper §3.3, ALGORITHMS.md §2.2-2.3"),
        ("rollout", "sde_kind"): (
            "flow",
            f"{EGRPO} fastvideo/workers/sampler/flux_sampler.py:133-193 _flow_grpo_step",
        ),
        ("rollout", "noise_level"): (0.7, f"{EGRPO} fastvideo/config/config.yaml:59 eta 0.7"),
        ("rollout", "entropy_threshold"): (
            2.2,
            "E-GRPO paper §4.1: τ = 2.2 on e^h per element (ablation 0, 1.8, 2.0, 2.2, 2.6)",
        ),
        ("rollout", "branch_window"): (0.5, "E-GRPO paper Table 3: the first 8 of 16 steps are active"),
        ("learner", "advantage_groups"): (
            "column",
            f"{EGRPO} fastvideo/workers/rollout_buffer.py:112-128: per (prompt, step) column",
        ),
        ("learner", "minibatch_order"): (
            "column",
            f"{EGRPO} fastvideo/trainer/grpo_trainer.py:296-337: an AdamW step per column",
        ),
        ("learner", "minibatches"): (1, "unused by order 'column' (one step per active column)"),
        ("reward", "aggregation"): (
            "reward",
            f"{EGRPO} fastvideo/workers/reward_manager/reward_manager.py:185-194: Σ w_m·r_m",
        ),
    },
    "flow_grpo": {
        **_COMMON,
        ("rollout", "plan"): (
            "sde",
            f"{FLOW} flow_grpo/diffusers_patch/sd3_pipeline_with_logprob.py:161: every step SDE",
        ),
        ("rollout", "sde_kind"): ("flow", f"{FLOW} flow_grpo/diffusers_patch/sd3_sde_with_logprob.py:45-48"),
        ("rollout", "noise_level"): (0.7, f"{FLOW} config/base.py:54 sample.noise_level 0.7"),
        ("learner", "timestep_fraction"): (
            1.0,
            f"{FLOW} config/grpo.py:127 0.99 of 10 steps = int(9.9) = the first 9, "
            "scripts/train_sd3.py:345,864: every transition but the last",
        ),
        ("learner", "kl_coef"): (
            0.04,
            f"{FLOW} config/grpo.py:52,91 train.beta 0.04 (OCR, GenEval; PickScore 0.01)",
        ),
        ("learner", "advantage_std"): (
            "batch",
            f"{FLOW} config/grpo.py:54 global_std True, flow_grpo/stat_tracking.py:27",
        ),
        ("learner", "minibatches"): (
            2,
            f"{FLOW} config/grpo.py:121,125: gradient_accumulation = num_batches / 2 -> 2 updates per epoch",
        ),
        ("learner", "minibatch_order"): (
            "shuffled",
            f"{FLOW} scripts/train_sd3.py:829 torch.randperm(total_batch_size)",
        ),
        ("reward", "aggregation"): (
            "reward",
            f"{FLOW} flow_grpo/rewards.py:381-400 multi_score: Σ w_m·r_m ('avg')",
        ),
    },
    "mix_grpo": {
        **_COMMON,
        ("rollout", "plan"): (
            "sliding_window",
            f"{MIX} fastvideo/train_grpo_flux.py:236-239: SDE in the window, ODE elsewhere",
        ),
        ("rollout", "sde_kind"): ("flow", f"{MIX} finetune_flux_grpo_MixGRPO.sh:196 --flow_grpo_sampling"),
        ("rollout", "noise_level"): (0.7, f"{MIX} finetune_flux_grpo_MixGRPO.sh:55 eta=0.7"),
        ("rollout", "sde_window"): (4, f"{MIX} finetune_flux_grpo_MixGRPO.sh:58 group_size=4"),
        ("rollout", "window_shift_every"): (25, f"{MIX} finetune_flux_grpo_MixGRPO.sh:57 iters_per_group=25"),
        ("rollout", "window_stride"): (1, f"{MIX} finetune_flux_grpo_MixGRPO.sh:60 prog_overlap_step=1"),
        ("learner", "timestep_fraction"): (
            1.0,
            f"{MIX} fastvideo/train_grpo_flux.py:543-544: every window step trained",
        ),
        ("learner", "minibatches"): (
            4,
            f"{MIX} finetune_flux_grpo_MixGRPO.sh:68,128: 1 prompt × 12 per rank, A = 3 -> 4 steps",
        ),
        ("learner", "minibatch_order"): (
            "in_order",
            f"{MIX} fastvideo/train_grpo_flux.py:543: samples in order",
        ),
        ("reward", "aggregation"): ("advantage", f"{MIX} finetune_flux_grpo_MixGRPO.sh:62 advantage_aggr"),
    },
}


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


def apply_preset(data: dict) -> tuple[dict, list[tuple[str, ...]]]:
    """`data` with the preset of its `algorithm` filled into every field it leaves out or sets
    to null, and the paths filled."""
    data = copy.deepcopy(data)
    filled = []
    for path, (value, _source) in PRESETS.get(data.get("algorithm", "chunk_grpo"), {}).items():
        node = data
        for key in path[:-1]:
            if node.get(key) is None:
                node[key] = {}
            node = node[key]
            if not isinstance(node, dict):
                break
        else:
            if node.get(path[-1]) is None:
                node[path[-1]] = copy.deepcopy(value)
                filled.append(path)
    return data, filled


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
                f"rollout.plan sliding_window needs rollout.num_steps >= 3 (windows stay below N − 2), got {r.num_steps}"
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
                    f"reward.chunk_weights has {len(mixes)} mixes but the plan has {len(layout)} chunks; give one per chunk"
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


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def dump_sources(cfg: Config) -> str:
    """config_sources.yaml: each field's origin, for the run dir beside config.yaml."""
    return yaml.safe_dump(cfg.sources, sort_keys=False, allow_unicode=True, width=10**6)
