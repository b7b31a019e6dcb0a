"""What the run writes for the dashboard: preview rewards, worker rows, Ray metrics."""

import json
import logging

import numpy as np
import pytest

from orchestrator.actors import worker_row
from orchestrator.config import load_config
from orchestrator.dashboard.ray_metrics import RayMetrics
from orchestrator.rollouts import RolloutBatch
from orchestrator.run import Run


def test_preview_json_holds_each_grid_rows_prompt_and_rewards(tmp_path):
    cfg = load_config("deploy/configs/tiny.yaml", ["rollout.group_size=4", "orchestrator.dashboard=false"])
    run = Run(cfg, tmp_path / "run", resume=False)
    prompts = ["p0", "p1", "p2"]
    # worker 0 rolled out groups 5, 6, 7 (4 samples each); its grid shows the first 2 groups
    batch = RolloutBatch(
        images=None,
        trajectory=None,
        prompts=tuple(p for p in prompts for _ in range(4)),
        groups=tuple(g for g in (5, 6, 7) for _ in range(4)),
        info={"preview_png": b"png", "preview_rows": 2, "policy_version": 3},
    )
    rewards = {"preference": np.arange(16, dtype=np.float32) / 10, "alignment": np.full(16, 0.5, np.float32)}
    run.write_preview(7, batch, rewards)
    run.close()
    meta = json.loads((tmp_path / "run" / "samples" / "iter_00007.json").read_text())
    assert (tmp_path / "run" / "samples" / "iter_00007.png").read_bytes() == b"png"
    assert meta["iteration"] == 7 and meta["policy_version"] == 3 and meta["group_size"] == 4
    assert [r["prompt"] for r in meta["rows"]] == ["p0", "p1"] and [r["group"] for r in meta["rows"]] == [
        5,
        6,
    ]
    # row 1 is samples 4..7 of the batch: preference 0.4, 0.5, 0.6, 0.7
    assert meta["rows"][1]["rewards"]["preference"] == pytest.approx([0.4, 0.5, 0.6, 0.7])
    assert meta["rows"][0]["rewards"]["alignment"] == [0.5] * 4


def test_no_preview_no_files(tmp_path):
    cfg = load_config("deploy/configs/tiny.yaml", ["orchestrator.dashboard=false"])
    run = Run(cfg, tmp_path / "run", resume=False)
    batch = RolloutBatch(images=None, trajectory=None, prompts=("p",) * 8, groups=(0,) * 8)
    run.write_preview(1, batch, {"preference": np.zeros(8)})
    run.close()
    assert list((tmp_path / "run" / "samples").iterdir()) == []


def test_worker_row_adds_busy_throughput_and_restarts():
    row = worker_row(
        "reward", 1, {"pid": 7, "node": "n", "images": 12, "seconds": 3.0, "scorer": "preference"}
    )
    assert row == {
        "role": "reward",
        "index": 1,
        "state": "alive",
        "restarts": 0,
        "pid": 7,
        "node": "n",
        "images": 12,
        "seconds": 3.0,
        "scorer": "preference",
        "images_per_s": 4.0,
    }
    assert worker_row("learner", 0, {"images": 0, "seconds": 0.0})["images_per_s"] is None


def test_ray_metrics_failing_turn_off_with_one_warning(monkeypatch, caplog):
    import ray.util.metrics

    calls = []

    class BrokenGauge:
        def __init__(self, name, description="", tag_keys=()):
            self.name = name

        def set(self, value, tags=None):
            calls.append(self.name)
            raise RuntimeError("metrics export unavailable")

    monkeypatch.setattr(ray.util.metrics, "Gauge", BrokenGauge)
    metrics = RayMetrics("run-a")
    with caplog.at_level(logging.WARNING, logger="orchestrator.dashboard.ray_metrics"):
        metrics.record_iteration({"iteration": 3, "throughput/images_per_s": 2.0})
        metrics.record_workers([{"role": "rollout", "index": 0, "images_per_s": 5.0}])
        metrics.record_iteration({"iteration": 4, "throughput/images_per_s": 2.0})
    assert calls == ["raygrpo_iteration"]  # off after the first failure
    assert not metrics.enabled and caplog.text.count("Ray metrics are off") == 1


def test_ray_metrics_record_the_rows_values(monkeypatch):
    import ray.util.metrics

    seen = {}

    class Gauge:
        def __init__(self, name, description="", tag_keys=()):
            self.name, self.tag_keys = name, tag_keys

        def set(self, value, tags=None):
            assert set(tags) == set(self.tag_keys)
            seen[(self.name, tuple(sorted(tags.items())))] = value

    monkeypatch.setattr(ray.util.metrics, "Gauge", Gauge)
    metrics = RayMetrics("run-a")
    metrics.record_iteration({"iteration": 3, "throughput/images_per_s": 2.5, "staleness": 0})
    metrics.record_workers(
        [
            {"role": "rollout", "index": 1, "images_per_s": 5.0},
            {"role": "learner", "index": 0, "images_per_s": None},
        ]
    )
    run = (("run", "run-a"),)
    assert seen == {
        ("raygrpo_iteration", run): 3,
        ("raygrpo_images_per_s", run): 2.5,
        ("raygrpo_staleness", run): 0,
        ("raygrpo_actor_images_per_s", (("index", "1"), ("role", "rollout"), ("run", "run-a"))): 5.0,
    }


def test_e_grpo_preview_rows_are_labelled_as_window_columns(tmp_path):
    """Under E-GRPO a grid row of G samples is one window column of a prompt group, not a prompt."""
    from orchestrator.config import build_plan

    cfg = load_config(
        "deploy/configs/tiny.yaml",
        ["algorithm=e_grpo", "rollout.group_size=2", "orchestrator.dashboard=false"],
    )
    plan = build_plan(cfg)
    k = len(plan.windows)
    assert k >= 2
    run = Run(cfg, tmp_path / "run", resume=False)
    run.write_plan(plan)
    members = 2 * k  # one group: K columns of G = 2
    batch = RolloutBatch(
        images=None,
        trajectory=None,
        prompts=("p0",) * members,
        groups=(0,) * members,
        info={"preview_png": b"png", "preview_rows": 2},
    )
    run.write_preview(0, batch, {"preference": np.arange(members, dtype=np.float32)})
    run.close()
    meta = json.loads((tmp_path / "run" / "samples" / "iter_00000.json").read_text())
    assert meta["row_kind"] == "window column"
    assert [tuple(r["window"]) for r in meta["rows"]] == list(plan.windows[:2])
    start, end = plan.windows[1]
    assert meta["rows"][1]["label"] == f"p0 · SDE window {start}–{end}"
    assert meta["rows"][1]["rewards"]["preference"] == [2.0, 3.0]  # the second column's two members


def test_worker_rows_carry_the_restart_count():
    assert worker_row("rollout", 0, {"images": 1, "seconds": 1.0}, restarts=2)["restarts"] == 2
