"""DESIGN.md §2 import rules, checked on the source (AST), not by convention."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rollout", "reward", "learner", "orchestrator")
ALLOWED = {
    "rollout": {"rollout"},
    "reward": {"reward"},
    # rollout.weight_sync: the learner -> rollout weight wire format, one copy for both ends
    "learner": {"learner", "rollout.sde", "rollout.trajectory", "rollout.weight_sync"},
    "orchestrator": set(PACKAGES),
}
PURE_MATH = [
    "rollout/sde.py",
    "learner/advantages.py",
    "learner/chunking.py",
    "learner/objective.py",
    "learner/schedule.py",
]
PURE_OK = {"torch", "numpy", "math", "dataclasses", "__future__", "typing"}


def project_imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
            for alias in node.names:  # `from rollout import sde` imports rollout.sde
                yield f"{node.module}.{alias.name}"


def allowed(name: str, rules: set[str]) -> bool:
    return any(name == r or name.startswith(r + ".") for r in rules)


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_only_what_design_allows(package):
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in project_imports(path):
            top = name.split(".")[0]
            if top in PACKAGES and not allowed(name, ALLOWED[package]):
                # `from rollout import sde` yields "rollout" too: judge it by its member
                if name == top and any(
                    allowed(f"{name}.{m}", ALLOWED[package]) for m in ("sde", "trajectory", "weight_sync")
                ):
                    continue
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "\n".join(bad)


def test_nothing_imports_orchestrator_or_torchvision():
    for package in ("rollout", "reward", "learner"):
        for path in (ROOT / package).rglob("*.py"):
            names = set(project_imports(path))
            assert not any(n.split(".")[0] == "orchestrator" for n in names), path
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            assert not any(n.split(".")[0] == "torchvision" for n in project_imports(path)), path


@pytest.mark.parametrize("module", PURE_MATH)
def test_pure_math_modules_import_only_torch_and_numpy(module):
    names = {n.split(".")[0] for n in project_imports(ROOT / module)}
    assert names <= PURE_OK, names - PURE_OK


@pytest.mark.parametrize(
    "module",
    [
        "reward/hpsv3.py",
        "reward/clip.py",
        "reward/imagereward.py",
        "reward/preprocess.py",
        "reward/worker.py",
        "tests/fixtures/reward_models.py",
    ],
)
def test_scorers_never_import_torchvision(module):
    """Preprocessing is PIL + torch; torchvision has no CPU build beside our torch (issue 5).
    (Module-level and function-level imports alike; tests/reward/test_scorers.py also checks
    at run time that scoring never imports it.)"""
    names = {n.split(".")[0] for n in project_imports(ROOT / module)}
    assert "torchvision" not in names
    assert not any(
        n.split(".")[0] in ("rollout", "learner", "orchestrator") for n in project_imports(ROOT / module)
    )
