"""docs/architecture.md's one-iteration walk-through stays true: every `file.py:name` in its
table imports, the table covers every phase loop.train times, and it spans ≤ 10 files."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"


def walk_table() -> list[list[str]]:
    text = DOC.read_text()
    table = text.split("<!-- walk -->", 1)[1].split("<!-- /walk -->", 1)[0]
    rows = [line for line in table.strip().splitlines() if line.startswith("|")][2:]  # header, rule
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def names(cell: str) -> list[tuple[str, str]]:
    return re.findall(r"`([\w/]+\.py):([\w.]+)`", cell)


def resolve(path: str, dotted: str):
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    obj = module
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def test_every_named_function_exists():
    rows = walk_table()
    found = [(p, n) for row in rows for cell in row[1:] for p, n in names(cell)]
    assert len(found) >= 2 * len(rows), f"each phase names a driver call and an actor call: {rows}"
    for path, dotted in found:
        assert callable(resolve(path, dotted)), f"{path}:{dotted} is not callable"


def test_the_table_has_every_phase_of_the_loop_and_at_most_ten_files():
    tree = ast.parse((ROOT / "orchestrator" / "loop.py").read_text())
    timed = [
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", None) == "timer"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    ]
    phases = [p for p in timed if p != "heldout"]  # the monitor's evaluation, only every k iterations
    rows = walk_table()
    assert [r[0] for r in rows] == phases  # sample, rollout, score, advantages, update, sync, log
    files = {p for row in rows for cell in row[1:] for p, _ in names(cell)}
    assert len(files) <= 10, sorted(files)


def test_a_renamed_function_would_fail():
    """The resolver really fails on a name that does not exist (the check above can fail)."""
    try:
        resolve("orchestrator/rollouts.py", "Rollouts.no_such_method")
    except AttributeError:
        return
    raise AssertionError("resolve() accepted a missing name")
