"""Prompt files: one prompt a line, and the `tiny:` names of the shipped ones.

    prompt_path("tiny:train")   rollout/tiny/train.txt (PROMPT_ALIASES); any other value is a
                                path, `~` expanded
    read_prompts(path)          the prompts, stripped; blank lines and '#' comments skipped

orchestrator.train_prompts / eval_prompts and every `--prompts` flag take an alias or a file.
The checks that name the field or flag and the fix are in orchestrator/inputs.py
(`read_prompt_field`, `prompt_arg`); the shipped files are written by the tiny worlds
(`python -m rollout.tiny.world`, `python -m rollout.tiny.text_world`).
"""

from __future__ import annotations

from pathlib import Path

from rollout.tiny import text_world, world

PROMPT_ALIASES = {
    "tiny:train": world.prompt_file("train"),
    "tiny:heldout": world.prompt_file("heldout"),
    "tiny:text:train": text_world.prompt_file("train"),
    "tiny:text:heldout": text_world.prompt_file("heldout"),
}


def prompt_path(value: str) -> Path:
    return Path(PROMPT_ALIASES.get(value, value)).expanduser()


def read_prompts(path: str | Path) -> list[str]:
    """One prompt a line; blank lines and lines starting with '#' are skipped."""
    lines = Path(path).read_text().splitlines()
    prompts = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not prompts:
        raise ValueError(f"prompt file {path} holds no prompts (one prompt a line expected)")
    return prompts
