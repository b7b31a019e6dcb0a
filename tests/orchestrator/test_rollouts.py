"""Rollouts' work units (rollout.units_per_worker): a slow actor runs fewer units, every group
is completed exactly once, async launches queue behind older ones — on real Ray actors whose
rollout is a wait (no model), started by `Rollouts` itself."""

import time

import pytest
import ray

from orchestrator.config import build_plan, load_config
from orchestrator.faults import gather
from orchestrator.rollouts import Rollouts
from orchestrator.run import PromptSampler

pytestmark = pytest.mark.usefixtures("local_ray")


class WaitWorker:
    """A rollout worker (RolloutWorker's constructor and calls) whose rollout is a wait:
    SECONDS[index] per group."""

    SECONDS: list[float] = []

    def __init__(self, model, rollout, plan, seed, index, chunks):
        self.index, self.seconds = index, self.SECONDS[index]

    def info(self) -> dict:
        return {"worker": self.index}

    def checksum(self) -> str:
        return "base"

    def rollout(self, groups, iteration, preview=False):
        time.sleep(self.seconds * len(groups))
        info = {
            "worker": self.index,
            "policy_version": 0,
            "groups": [g for g, _ in groups],
            "iteration": iteration,
            "preview": preview,
        }
        return [self.index] * len(groups), None, info


class OneSlowOfThree(WaitWorker):
    SECONDS = [1.5, 0.05, 0.05]


class TwoQuick(WaitWorker):
    SECONDS = [0.01, 0.01]


class TwoEven(WaitWorker):
    SECONDS = [0.05, 0.05]


def make_rollouts(actor_cls, units: int, overrides: tuple = ()) -> Rollouts:
    overrides = [
        "rollout.group_size=2",
        f"rollout.num_workers={len(actor_cls.SECONDS)}",
        f"rollout.units_per_worker={units}",
        *overrides,
    ]
    cfg = load_config("deploy/configs/tiny.yaml", overrides)
    return Rollouts(cfg, build_plan(cfg), learners=[], actor_cls=actor_cls)  # returns once all started


def units_by_actor(batches) -> dict[int, int]:
    out = {}
    for b in batches:
        out[b.info["worker"]] = out.get(b.info["worker"], 0) + 1
    return out


def test_slow_actor_runs_fewer_units_and_every_group_runs_once():
    # 3 actors, 4 units each = 12 units of one group; actor 0 takes 1.5 s a unit, the others 0.05 s:
    # while actor 0 runs its first unit the others can run all 11 others
    rollouts = make_rollouts(OneSlowOfThree, units=4)
    groups = [(g, f"prompt {g}") for g in range(12)]
    batches = rollouts.rollout(groups, 0, preview=True)
    done = sorted(g for b in batches for g in b.info["groups"])
    assert done == list(range(12))  # each group exactly once: none lost, none duplicated
    assert [g for b in batches for g in dict.fromkeys(b.groups)] == list(range(12))  # batches in group order
    assert all(b.groups == (b.info["groups"][0],) * 2 for b in batches)  # per sample: G = 2 members
    assert [b.prompts[0] for b in batches] == [f"prompt {g}" for g in range(12)]
    counts = units_by_actor(batches)
    assert sum(counts.values()) == 12
    assert counts.get(0, 0) < min(counts[1], counts[2])  # the slow actor ran fewer units
    assert [b.info["preview"] for b in batches] == [True] + [False] * 11
    assert rollouts._queue == [] and rollouts._in_flight == []
    rollouts.shutdown()


def test_one_unit_per_actor_is_the_static_split():
    rollouts = make_rollouts(TwoQuick, units=1)
    groups = [(g, "p") for g in range(5)]
    batches = rollouts.rollout(groups, 0, preview=False)
    assert [b.info["groups"] for b in batches] == [[0, 1], [2, 3, 4]]
    assert [b.info["worker"] for b in batches] == [0, 1]
    rollouts.shutdown()


def test_async_launches_queue_behind_older_ones_and_are_taken_in_order():
    # async mode: starting iteration 0 launches 1 too, while 0 still runs; taking 0 returns only
    # 0's groups; taking 1 afterwards returns 1's, each once, all units accounted for
    rollouts = make_rollouts(
        TwoEven, units=3, overrides=["orchestrator.mode=async", "orchestrator.prompts_per_iter=6"]
    )
    prompts = PromptSampler([f"p{i}" for i in range(12)], seed=0)
    rollouts.start(0, prompts, checkpoint=False)
    assert sorted(rollouts.started) == [0, 1] and len(rollouts._queue) == 10  # two units running, ten waiting
    got0 = rollouts.take(0)
    assert sorted(g for b in got0 for g in b.info["groups"]) == list(range(6))
    assert {b.info["iteration"] for b in got0} == {0} and {b.iteration for b in got0} == {0}
    got1 = rollouts.take(1)
    assert sorted(g for b in got1 for g in b.info["groups"]) == list(range(6))
    assert {b.info["iteration"] for b in got1} == {1}
    # the two iterations drew the 12 prompts of one epoch, each once
    assert sorted(b.prompts[0] for b in got0 + got1) == sorted(f"p{i}" for i in range(12))
    assert rollouts._queue == [] and rollouts._in_flight == [] and rollouts.started == {}
    rollouts.shutdown()


def test_gather_awaits_tasks_added_as_others_finish():
    @ray.remote(num_cpus=0)
    def value(x):
        return x

    added = []

    def then(key, result):
        if key < 3:  # each of 0, 1, 2 adds the next key
            added.append(key + 1)
            return {key + 1: value.remote(10 * (key + 1))}
        return {}

    assert gather({0: value.remote(0)}, retry=None, then=then) == {0: 0, 1: 10, 2: 20, 3: 30}
    assert added == [1, 2, 3]
