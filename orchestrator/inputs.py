"""Inputs checked before any actor starts: the YAML itself, the prompt files, the paths actors
open, and whether the learner can split the batch. Each error names the field and the fix.

    load_yaml(path)           the config mapping; malformed YAML -> file:line:col, a duplicate
                              key -> the key and both lines
    check_config(cfg, plan)   prompt files hold prompts every scorer can read; model and scorer
                              paths exist or are hub ids, and relative ones reach the actors;
                              learner ranks × minibatches fit the batch; an ocr_likelihood
                              scorer is not given images that need text detection (run by
                              `Config`'s validator, so by load_config)
    preflight(cfg)            what needs more than the config file: the embedding cache holds
                              every prompt, and each hub id is in the local Hugging Face cache or
                              on the hub (the CLI runs it before Ray starts; `train()` again, for
                              API callers)

The path checks, and the rule that tells a local path from a hub id, are in
orchestrator/paths.py (re-exported here).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from orchestrator.errors import ConfigError
from orchestrator.paths import (  # noqa: F401 (is_local, upload_exclusion: re-exported)
    check_model_path,
    check_scorer_paths,
    check_visible,
    confirm_hub_id,
    hub_ids,
    is_local,
    upload_exclusion,
)
from orchestrator.prompts import prompt_path, read_prompts


# -- the YAML file ------------------------------------------------------------------------------
class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.setdefault(key, key_node.start_mark)
        except TypeError:  # an unhashable key: PyYAML's own error follows
            continue
        if first is not key_node.start_mark:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first at line {first.line + 1}); keep one of them",
                key_node.start_mark,
            )
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def load_yaml(path: Path) -> dict:
    """The mapping in a YAML config file; errors say file:line:col and what is wrong."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {path}: cannot read it ({err})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader) or {}
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        if isinstance(err, yaml.constructor.ConstructorError):  # a duplicate key, an unknown tag
            raise ConfigError(f"config file {where}: {err.problem}") from None
        context = f" ({err.context})" if err.context and err.problem else ""
        raise ConfigError(
            f"config file {where}: {err.problem or err.context}{context}; "
            "fix the YAML there (indentation, a missing ':' or quote)"
        ) from None
    except yaml.reader.ReaderError as err:  # a character YAML does not allow (a control character, say)
        line = text.count("\n", 0, err.position) + 1
        column = err.position - text.rfind("\n", 0, err.position)
        raise ConfigError(
            f"config file {path}:{line}:{column}: unacceptable character #x{err.character:04x} "
            f"({err.reason}); remove it"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping (section: fields) at the top level, "
            f"not a {type(data).__name__}"
        )
    return data


def yaml_value(item: str, raw: str):
    """An override's value, parsed as YAML (`learner.lr=3e-4`, `sizes=[2, 3]`)."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or err
        raise ConfigError(
            f"override {item!r}: the value is not valid YAML ({problem}); quote strings, "
            "close brackets: key.sub=[1, 2]"
        ) from None


# -- prompt files -------------------------------------------------------------------------------
def read_prompt_field(label: str, path: Path) -> list[str]:
    """The prompts of a prompt file, or an error naming its field or flag (`label`) and the fix."""
    try:
        return read_prompts(path)
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{label}: cannot read {path} ({err})") from None
    except ValueError:
        raise ValueError(
            f"{label}: {path} holds no prompts (only blank lines or '#' comments); write one prompt a line"
        ) from None


def prompt_arg(flag: str, value: str, scorers=()) -> list[str]:
    """The prompts of a CLI prompt-file argument (--prompts), checked like the config's."""
    path = prompt_path(value)
    try:
        if not path.is_file():
            raise ValueError(
                f"{flag} {value}: no file {path}; give a file with one prompt a line, "
                "or tiny:train / tiny:heldout"
            )
        prompts = read_prompt_field(flag, path)
        check_prompts_readable(scorers, flag, path, prompts)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return prompts


def _line_of(path: Path, prompt: str) -> int:
    """The line number of `prompt` in `path` (read_prompts strips each line)."""
    return next(i for i, line in enumerate(path.read_text().splitlines(), start=1) if line.strip() == prompt)


def check_prompts_readable(scorers, label: str, path: Path, prompts: list[str]) -> None:
    """Every configured scorer can score these prompts (the grammar only; no model is loaded)."""
    from reward.worker import validate_prompts

    for scorer in scorers:
        try:
            validate_prompts(scorer, prompts)
        except ValueError as err:
            first = next(p for p in prompts if _fails(scorer, p))
            raise ValueError(
                f"{label}: {path}:{_line_of(path, first)}: {err}. Reward scorer "
                f"{scorer.name!r} scores these prompts: give prompts it reads, or remove it from "
                "reward.scorers"
            ) from None


def _fails(scorer, prompt: str) -> bool:
    from reward.worker import validate_prompts

    try:
        validate_prompts(scorer, [prompt])
    except ValueError:
        return True
    return False


# -- the whole config ---------------------------------------------------------------------------
def check_config(cfg, plan) -> None:
    """Config-time checks (module docstring) of `cfg` and its rollout plan; raises ValueError
    naming the field and the fix."""

    for field in ("train_prompts", "eval_prompts"):
        path, label = prompt_path(getattr(cfg.orchestrator, field)), f"orchestrator.{field}"
        check_prompts_readable(cfg.reward.scorers, label, path, read_prompt_field(label, path))
    check_model_path(cfg.model.path)
    if cfg.model.embeddings:
        check_visible("model.embeddings", cfg.model.embeddings)
    for i, scorer in enumerate(cfg.reward.scorers):
        check_scorer_paths(scorer, i)
    check_learner_split(cfg, plan.members_per_group(cfg.rollout.group_size))
    check_ocr_detection(cfg)


def check_ocr_detection(cfg) -> None:
    """ocr_likelihood reads each image as one text line (reward/ocr.py); a FLUX / SD3 model's
    images are scenes whose text the other ocr kinds find by detection, so refuse it there
    unless the user says every image is one line (detect: false)."""
    from reward.ocr import DETECT_ABOVE
    from rollout.policy import TINY_SHIPPED

    path = cfg.model.path
    if path in TINY_SHIPPED or (Path(path).expanduser() / "raygrpo_model.json").exists():
        return  # the tiny model: 32-px-high images
    height = cfg.model.resolution or 1024
    for i, scorer in enumerate(cfg.reward.scorers):
        if scorer.kind == "ocr_likelihood" and scorer.detect is None and height > DETECT_ABOVE:
            raise ValueError(
                f"reward.scorers[{i}] ({scorer.name!r}) is kind ocr_likelihood, which reads each image "
                f"as one text line, but model.path {path!r} makes {height}-px scenes whose text needs "
                "detection; use kind ocr (Flow-GRPO's detector + recogniser), or set detect: false on "
                "the scorer if every image is one line of text that fills it"
            )


def check_learner_split(cfg, members_per_group: int) -> None:
    """Each of the `minibatches` optimizer steps gets at least one sample (learner/schedule.py
    splits a minibatch over the ranks; a rank whose share is empty runs zero-weight passes)."""
    lc, samples = cfg.learner, cfg.orchestrator.prompts_per_iter * members_per_group
    if lc.minibatch_order != "column" and lc.minibatches > samples:
        raise ValueError(
            f"learner.minibatches {lc.minibatches} exceeds the {samples} samples of an iteration "
            f"(orchestrator.prompts_per_iter {cfg.orchestrator.prompts_per_iter} × {members_per_group} "
            "per group); lower learner.minibatches or raise orchestrator.prompts_per_iter"
        )


# -- before Ray: the embedding cache and hub ids ------------------------------------------------
def preflight(cfg, embeddings: bool = True) -> None:
    """Checks that read more than the config (module docstring); raises ConfigError.
    `embeddings`: check the cache too (not for `raygrpo embed`, which writes it)."""
    try:
        if embeddings:
            check_embeddings(cfg)
        for field, value in hub_ids(cfg):
            confirm_hub_id(field, value)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def check_embeddings(cfg) -> None:
    """model.embeddings holds a cache `raygrpo embed` wrote, for this model kind, with every prompt."""
    from rollout.embeddings import INDEX

    if not cfg.model.embeddings:
        return
    folder = Path(cfg.model.embeddings).expanduser()
    write = (
        f"write it with `raygrpo embed --config CONFIG --prompts {cfg.orchestrator.train_prompts}` "
        "(it adds the config's train and eval prompts)"
    )
    if not (folder / INDEX).is_file():
        raise ValueError(
            f"model.embeddings {cfg.model.embeddings!r}: no {INDEX} there"
            f"{'' if folder.is_dir() else ' (no such directory)'}; {write}"
        )
    try:
        meta = json.loads((folder / INDEX).read_text())
        cached, kind = meta["prompts"], meta["kind"]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(
            f"model.embeddings {cfg.model.embeddings!r}: {INDEX} is unreadable ({err}); {write}"
        ) from None
    model_kind = _local_model_kind(cfg.model.path)
    if model_kind is not None and kind != model_kind:
        raise ValueError(
            f"model.embeddings {cfg.model.embeddings!r} holds {kind} embeddings but model.path "
            f"{cfg.model.path!r} is a {model_kind} model; {write}"
        )
    for field in ("train_prompts", "eval_prompts"):
        prompts = read_prompts(prompt_path(getattr(cfg.orchestrator, field)))
        missing = [p for p in dict.fromkeys(prompts) if p not in cached]
        if missing:
            raise ValueError(
                f"model.embeddings {cfg.model.embeddings!r} lacks {len(missing)} prompt(s) of "
                f"orchestrator.{field}, e.g. {missing[0]!r}; {write}"
            )
    if kind == "sd3" and cfg.model.negative_prompt not in cached:
        raise ValueError(
            f"model.embeddings {cfg.model.embeddings!r} lacks model.negative_prompt "
            f"{cfg.model.negative_prompt!r}; {write}"
        )


def _local_model_kind(path: str) -> str | None:
    """'tiny' / 'flux' / 'sd3' when the model is local and says so; None for a hub id."""
    from rollout.policy import PIPELINES

    p = Path(path).expanduser()
    if path == "tiny" or (p / "raygrpo_model.json").is_file():
        return "tiny"
    if (p / "model_index.json").is_file():
        return PIPELINES.get(json.loads((p / "model_index.json").read_text()).get("_class_name"))
    return None
