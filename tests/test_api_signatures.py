"""ALGORITHMS.md §4: checks outside this repository call these functions by name, argument
names, keyword-only markers and defaults. Their behaviour is tested with hand-worked numbers in
tests/learner and tests/rollout; this file pins the signatures themselves."""

import dataclasses
import importlib
import inspect

import pytest

P, K = inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY
EMPTY = inspect.Parameter.empty
# (module, function): [(name, kind, default)] in order
SPEC = {
    ("learner.chunking", "uniform_chunks"): [("num_transitions", P, EMPTY), ("size", P, EMPTY)],
    ("learner.chunking", "adaptive_chunks"): [("l1_rel", P, EMPTY), ("stop_size", K, 5)],
    ("learner.chunking", "trajectory_l1_rel"): [("latents", P, EMPTY)],
    ("learner.chunking", "chunk_sampling_probs"): [
        ("l1_rel", P, EMPTY),
        ("sizes", P, EMPTY),
        ("method", P, "normalized"),
    ],
    ("learner.chunking", "train_count"): [("num_chunks", P, EMPTY), ("fraction", P, EMPTY)],
    ("learner.objective", "clipped_objective"): [
        ("log_prob", P, EMPTY),
        ("old_log_prob", P, EMPTY),
        ("advantages", P, EMPTY),
        ("chunk_ids", P, EMPTY),
        ("clip_range", K, EMPTY),
        ("clip_range_high", K, None),
        ("mask", K, None),
    ],
    ("learner.advantages", "group_advantages"): [
        ("rewards", P, EMPTY),
        ("group_ids", P, EMPTY),
        ("eps", K, 1e-8),
        ("clip", K, 5.0),
    ],
    ("learner.advantages", "granular_advantages"): [
        ("rewards", P, EMPTY),
        ("group_ids", P, EMPTY),
        ("eps", K, 1e-8),
        ("clip", K, 5.0),
    ],
    ("rollout.plan", "step_exp_entropy"): [
        ("sigmas", P, EMPTY),
        ("start", P, EMPTY),
        ("end", P, EMPTY),
        ("noise_level", P, EMPTY),
    ],
    ("rollout.plan", "entropy_merge_windows"): [
        ("sigmas", P, EMPTY),
        ("noise_level", P, EMPTY),
        ("tau", P, 2.2),
        ("active", P, None),
    ],
    ("rollout.sampler", "branch_path"): [
        ("velocity", P, EMPTY),
        ("x", P, EMPTY),
        ("sigmas", P, EMPTY),
        ("window", P, EMPTY),
        ("noise", P, EMPTY),
        ("noise_level", K, EMPTY),
        ("stride", K, 1),
    ],
}


@pytest.mark.parametrize("where", SPEC, ids=lambda w: w[1])
def test_section_4_signatures(where):
    module, name = where
    params = inspect.signature(getattr(importlib.import_module(module), name)).parameters.values()
    assert [(p.name, p.kind, p.default) for p in params] == SPEC[where]


def test_sde_step_guard_and_branch_path_result():
    from rollout.sampler import BranchPath
    from rollout.sde import sde_step

    guard = inspect.signature(sde_step).parameters["guard_sigma"]
    assert (guard.kind, guard.default) == (K, None)
    assert [f.name for f in dataclasses.fields(BranchPath)] == ["x_start", "x_end", "log_prob", "x0"]
