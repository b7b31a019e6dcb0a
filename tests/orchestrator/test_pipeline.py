"""Which rollouts the pipeline launches when: sync, async (one ahead), and no run-ahead past a
checkpoint or the last iteration. A fake cluster records the launches."""

import pytest

from orchestrator.config import load_config
from orchestrator.control import ScaleControl
from orchestrator.pipeline import RolloutPipeline
from orchestrator.run import PromptSampler


class FakeRun:
    def __init__(self, cfg):
        self.cfg = cfg
        self.prompts = PromptSampler([f"p{i}" for i in range(50)], seed=0)

    def due(self, iteration):
        o = self.cfg.orchestrator
        return iteration + 1 == o.iterations or (iteration + 1) % o.checkpoint_every == 0


class FakeCluster:
    def __init__(self):
        self.events = []

    def launch(self, groups, iteration, preview):
        self.events.append(("launch", iteration))
        return [iteration]

    def collect(self, batches):
        self.events.append(("collect", batches[0]))
        return batches


def events(mode, iterations=5, checkpoint_every=3):
    cfg = load_config("deploy/configs/tiny.yaml", [f"orchestrator.mode={mode}", f"orchestrator.iterations={iterations}",
                                                   f"orchestrator.checkpoint_every={checkpoint_every}"])
    run, cluster = FakeRun(cfg), FakeCluster()
    pipeline = RolloutPipeline(cfg, run, cluster)
    for k in range(iterations):
        pipeline.start(k)
        assert pipeline.take(k) == [k]
        cluster.events.append(("checkpoint", k) if run.due(k) else ("end", k))
    return cluster.events


def test_sync_launches_each_iteration_inside_it():
    assert events("sync") == [
        ("launch", 0), ("collect", 0), ("end", 0),
        ("launch", 1), ("collect", 1), ("end", 1),
        ("launch", 2), ("collect", 2), ("checkpoint", 2),
        ("launch", 3), ("collect", 3), ("end", 3),
        ("launch", 4), ("collect", 4), ("checkpoint", 4),
    ]


def test_async_launches_one_ahead_but_never_past_a_checkpoint_or_the_end():
    assert events("async") == [
        ("launch", 0), ("launch", 1), ("collect", 0), ("end", 0),  # 1 runs during 0's update
        ("launch", 2), ("collect", 1), ("end", 1),
        ("collect", 2), ("checkpoint", 2),  # 2 checkpoints: nothing ahead, resume is exact
        ("launch", 3), ("launch", 4), ("collect", 3), ("end", 3),
        ("collect", 4), ("checkpoint", 4),
    ]


def test_async_draws_the_same_prompts_in_the_same_order_as_sync():
    def drawn(mode):
        cfg = load_config("deploy/configs/tiny.yaml", [f"orchestrator.mode={mode}", "orchestrator.iterations=4"])
        run, got = FakeRun(cfg), []

        class Recorder(FakeCluster):
            def launch(self, groups, iteration, preview):
                got.append((iteration, groups))
                return [iteration]

        pipeline = RolloutPipeline(cfg, run, Recorder())
        for k in range(4):
            pipeline.start(k)
            pipeline.take(k)
        return sorted(got)

    assert drawn("async") == drawn("sync")


def test_max_staleness_above_1_is_rejected():
    from orchestrator.config import ConfigError

    with pytest.raises(ConfigError, match="orchestrator.max_staleness"):
        load_config(None, ["orchestrator.max_staleness=2"])


def test_scale_control_hands_one_request_to_the_driver():
    control = ScaleControl(workers=1)
    assert control.take() is None
    control.request(3)
    sent = control.request(2)  # the last request wins
    assert control.take() == {"workers": 2, "id": 2} and control.take() is None
    assert control.state()["applied_id"] < sent["id"]
    control.applied(2, sent["id"])
    assert control.state() == {"workers": 2, "pending": None, "applied_id": 2}
    with pytest.raises(ValueError, match="at least 1"):
        control.request(0)
