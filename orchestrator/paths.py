"""Paths actors open, checked before any actor starts: local paths exist and reach the actors,
hub ids are in the Hugging Face cache or on the hub (orchestrator/inputs.py runs these checks).

Paths (model.path, model.embeddings, reward.scorers[*].path and .base) follow one rule:
a value is a *local path* when it starts with '/', './', '../' or '~', has more than one '/',
exists here, or its first component is a directory here (`models/flux` with a ./models
directory); it must then exist. Any other `owner/name` (or a bare legacy name such as
bert-base-uncased) is a *hub id*, used only once the driver has found it in the local
Hugging Face cache or on the hub: a typo is never fetched, or looked for, inside an actor.

Actors open relative paths from their working dir: on a cluster (`ray job submit
--working-dir .`) that is the uploaded copy of this directory, which leaves out what
.gitignore / .rayignore (at any level) and deploy/runtime_env.yaml's `excludes` match. A
relative path that the upload leaves out (e.g. under runs/) is refused; an absolute path
must be on storage every node mounts.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

import yaml

RUNTIME_ENV = Path("deploy/runtime_env.yaml")  # its `excludes` apply to the working-dir upload
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
# What a model scorer's local `path` must hold (a file path is taken as that file itself).
SCORER_FILES = {
    "hpsv3": ["HPSv3.safetensors"],
    "imagereward": ["ImageReward.pt", "med_config.json"],
    "clip": ["config.json"],
}


# -- paths actors open --------------------------------------------------------------------------
def is_local(value: str) -> bool:
    """True when `value` reads as a local path, False for a hub id (module docstring)."""
    if value.startswith(("/", "./", "../", "~")) or value in (".", "..") or Path(value).expanduser().exists():
        return True
    parts = value.split("/")
    return len(parts) > 2 or (len(parts) == 2 and Path(parts[0]).is_dir()) or not _HUB_ID.match(value)


def _pathspec(lines: list[str]):
    from ray._private.thirdparty.pathspec import PathSpec  # the matcher Ray's upload uses

    return PathSpec.from_lines("gitwildmatch", lines)


def upload_exclusion(value: str, root: Path | None = None) -> str | None:
    """Why `ray job submit --working-dir .` would leave the relative path `value` out of the
    upload (matched the way Ray's packaging matches: every prefix, against each ignore file
    from its directory down), or None when it is uploaded."""
    root = Path.cwd() if root is None else root
    rel = Path(os.path.normpath(value))
    if rel.parts and rel.parts[0] == "..":
        return f"{value} leads outside the working dir {root}"
    specs = []  # (depth of the directory the patterns are relative to, spec, source)
    env_file = root / RUNTIME_ENV
    if env_file.is_file():
        excludes = (yaml.safe_load(env_file.read_text()) or {}).get("excludes") or []
        specs.append((0, _pathspec(excludes), f"the excludes of {RUNTIME_ENV}"))
    ignore_files = [".rayignore"] + (
        [] if os.environ.get("RAY_RUNTIME_ENV_IGNORE_GITIGNORE") == "1" else [".gitignore"]
    )
    for depth in range(len(rel.parts)):
        folder = root.joinpath(*rel.parts[:depth])
        for name in ignore_files:
            if (folder / name).is_file():
                specs.append(
                    (
                        depth,
                        _pathspec((folder / name).read_text().splitlines()),
                        str(folder.relative_to(root) / name),
                    )
                )
        for level, spec, source in specs:
            if spec.match_file("/".join(rel.parts[level : depth + 1])):
                return f"{'/'.join(rel.parts[: depth + 1])} is excluded by {source}"
    return None


def check_visible(field: str, value: str) -> None:
    """A relative path an actor opens must be one the working-dir upload carries."""
    if Path(value).expanduser().is_absolute():
        return
    why = upload_exclusion(value)
    if why:
        raise ValueError(
            f"{field} {value!r} is a relative path that Ray's working-dir upload leaves out ({why}), "
            "so on a cluster (`ray job submit --working-dir .`) no actor can open it. Put it on storage "
            "every node mounts and give the absolute path (e.g. "
            f"{field}: /mnt/runs/{value.removeprefix('runs/')}), or move it to a relative directory "
            "that is uploaded (not ignored; the upload is limited to a few hundred MiB)"
        )


def _missing(field: str, value: str, what: str) -> ValueError:
    reason = (
        "it starts with '/', './', '../' or '~', or has more than one '/'"
        if value.startswith(("/", ".", "~")) or value.count("/") > 1
        else f"{value.split('/')[0]}/ is a directory here"
        if "/" in value
        else "it cannot be a hub id"
    )
    return ValueError(
        f"{field} {value!r}: no such {what} (relative to {Path.cwd()}); it reads as a local path "
        f"because {reason}. Give an existing {what}, or a hub id owner/name"
    )


def check_model_path(value: str) -> None:
    if value in ("tiny", "tiny:text") or not is_local(
        value
    ):  # the shipped models (rollout.policy.TINY_SHIPPED)
        return
    p = Path(value).expanduser()
    if not p.exists():
        raise _missing("model.path", value, "directory")
    if not ((p / "raygrpo_model.json").is_file() or (p / "model_index.json").is_file()):
        raise ValueError(
            f"model.path {value!r} has neither raygrpo_model.json nor model_index.json; point it at "
            "'tiny', a diffusers FluxPipeline / StableDiffusion3Pipeline directory, or a hub id"
        )
    check_visible("model.path", value)


def check_scorer_paths(scorer, index: int) -> None:
    field = f"reward.scorers[{index}] ({scorer.name})"
    if scorer.path and is_local(scorer.path):
        p = Path(scorer.path).expanduser()
        if not p.exists():
            raise _missing(f"{field}.path", scorer.path, "file or directory")
        lacking = [f for f in SCORER_FILES.get(scorer.kind, []) if p.is_dir() and not (p / f).is_file()]
        if lacking:
            raise ValueError(
                f"{field}.path {scorer.path!r} has no {', '.join(lacking)}; point it at the "
                f"directory that holds {', '.join(SCORER_FILES[scorer.kind])}, or a hub id"
            )
        check_visible(f"{field}.path", scorer.path)
    if scorer.base and is_local(scorer.base):
        if not Path(scorer.base).expanduser().exists():
            raise _missing(f"{field}.base", scorer.base, "directory")
        check_visible(f"{field}.base", scorer.base)


# -- hub ids ------------------------------------------------------------------------------------
def hub_ids(cfg) -> list[tuple[str, str]]:
    """(field, hub id) of every path-like field that reads as a hub id."""
    fields = [("model.path", cfg.model.path)] if cfg.model.path not in ("tiny", "tiny:text") else []
    for i, s in enumerate(cfg.reward.scorers):
        fields += [
            (f"reward.scorers[{i}] ({s.name}).path", s.path),
            (f"reward.scorers[{i}] ({s.name}).base", s.base),
        ]
    return [(f, v) for f, v in fields if v and not is_local(v)]


@lru_cache(maxsize=64)
def confirm_hub_id(field: str, repo: str) -> None:
    """`repo` is in the local Hugging Face cache, or the hub has it (gated counts); else refuse."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    if (Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}").is_dir():
        return
    rule = (
        "a value reads as a hub id when it is owner/name and neither it nor its first component exists "
        "here; a local path must exist"
    )
    if constants.HF_HUB_OFFLINE:
        raise ValueError(
            f"{field} {repo!r}: not a local path, and not in the Hugging Face cache {constants.HF_HUB_CACHE} "
            f"while HF_HUB_OFFLINE is set ({rule}); download it first (`hf download {repo}`) or give "
            "a local directory"
        )
    try:
        HfApi().model_info(repo, timeout=15)
    except GatedRepoError:
        return  # it exists; the actors' token decides access
    except RepositoryNotFoundError:
        raise ValueError(
            f"{field} {repo!r}: no local file or directory of that name (relative to {Path.cwd()}), "
            f"and no hub repository {repo} ({rule}); fix the path or the hub id"
        ) from None
    except Exception as err:  # network errors: their classes differ between huggingface_hub versions
        raise ValueError(
            f"{field} {repo!r}: not a local path, not in the Hugging Face cache, and the hub cannot "
            f"be reached to confirm it ({type(err).__name__}: {err}; {rule}); download it on storage "
            "the actors see and give that directory, or fix the network"
        ) from None
