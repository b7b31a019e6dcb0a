"""Which rollouts start when (orchestrator/rollouts.py RolloutSchedule, the mode of `Rollouts`
and `LocalRollouts`): sync, async (one ahead), and no run-ahead past a checkpoint or the last
iteration. A schedule whose launches are records stands in for the actors."""

import pytest

from orchestrator.config import load_config
from orchestrator.control import ScaleControl
from orchestrator.rollouts import RolloutSchedule
from orchestrator.run import PromptSampler


def due(cfg, iteration):  # as Run.due: a checkpoint after this iteration
    o = cfg.orchestrator
    return iteration + 1 == o.iterations or (iteration + 1) % o.checkpoint_every == 0


class Recorder(RolloutSchedule):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.events = []

    def _launch(self, groups, iteration, preview):
        self.events.append(("launch", iteration))
        return [iteration]

    def _collect(self, launched):
        self.events.append(("collect", launched[0]))
        return launched


def events(mode, iterations=5, checkpoint_every=3):
    cfg = load_config(
        "deploy/configs/tiny.yaml",
        [
            f"orchestrator.mode={mode}",
            f"orchestrator.iterations={iterations}",
            f"orchestrator.checkpoint_every={checkpoint_every}",
        ],
    )
    prompts, rollouts = PromptSampler([f"p{i}" for i in range(50)], seed=0), Recorder(cfg)
    for k in range(iterations):
        rollouts.start(k, prompts, checkpoint=due(cfg, k))
        assert rollouts.take(k) == [k]
        rollouts.events.append(("checkpoint", k) if due(cfg, k) else ("end", k))
    return rollouts.events


def test_sync_launches_each_iteration_inside_it():
    assert events("sync") == [
        ("launch", 0),
        ("collect", 0),
        ("end", 0),
        ("launch", 1),
        ("collect", 1),
        ("end", 1),
        ("launch", 2),
        ("collect", 2),
        ("checkpoint", 2),
        ("launch", 3),
        ("collect", 3),
        ("end", 3),
        ("launch", 4),
        ("collect", 4),
        ("checkpoint", 4),
    ]


def test_async_launches_one_ahead_but_never_past_a_checkpoint_or_the_end():
    assert events("async") == [
        ("launch", 0),
        ("launch", 1),
        ("collect", 0),
        ("end", 0),  # 1 runs during 0's update
        ("launch", 2),
        ("collect", 1),
        ("end", 1),
        ("collect", 2),
        ("checkpoint", 2),  # 2 checkpoints: nothing ahead, resume is exact
        ("launch", 3),
        ("launch", 4),
        ("collect", 3),
        ("end", 3),
        ("collect", 4),
        ("checkpoint", 4),
    ]


def test_async_draws_the_same_prompts_in_the_same_order_as_sync():
    def drawn(mode):
        cfg = load_config(
            "deploy/configs/tiny.yaml", [f"orchestrator.mode={mode}", "orchestrator.iterations=4"]
        )
        prompts, got = PromptSampler([f"p{i}" for i in range(50)], seed=0), []

        class Drawn(Recorder):
            def _launch(self, groups, iteration, preview):
                got.append((iteration, groups))
                return [iteration]

        rollouts = Drawn(cfg)
        for k in range(4):
            rollouts.start(k, prompts, checkpoint=due(cfg, k))
            rollouts.take(k)
        return sorted(got)

    assert drawn("async") == drawn("sync")


def test_max_staleness_above_1_is_rejected():
    from orchestrator.config import ConfigError

    with pytest.raises(ConfigError, match="orchestrator.max_staleness"):
        load_config(None, ["orchestrator.max_staleness=2"])


def test_scale_control_hands_one_request_to_the_driver():
    control = ScaleControl(rollout_workers=1)
    assert control.pop_request() is None
    control.request(3)
    sent = control.request(2)  # the last request wins
    assert control.pop_request() == {"rollout_workers": 2, "id": 2} and control.pop_request() is None
    assert control.state()["applied_id"] < sent["id"]
    control.applied(2, sent["id"])
    assert control.state() == {"rollout_workers": 2, "pending": None, "applied_id": 2}
    with pytest.raises(ValueError, match="at least 1"):
        control.request(0)
