"""RolloutPool work units (rollout.units_per_worker): a slow worker runs fewer units, every group
is completed exactly once, async launches queue behind older ones — on real Ray actors whose
rollout is a wait (no model)."""

import time

import pytest
import ray

from orchestrator.config import build_plan, load_config
from orchestrator.faults import gather
from orchestrator.pool import RolloutPool

pytestmark = pytest.mark.usefixtures("local_ray")


class WaitWorker:
    """A rollout worker whose rollout is a wait: `seconds` per group."""

    def __init__(self, index: int, seconds: float):
        self.index, self.seconds = index, seconds

    def ready(self) -> bool:
        return True

    def rollout(self, groups, iteration, preview=False):
        time.sleep(self.seconds * len(groups))
        info = {"worker": self.index, "policy_version": 0, "groups": [g for g, _ in groups], "iteration": iteration}
        return [self.index] * len(groups), None, info


class Weights:
    version = 0


def make_pool(seconds: list[float], units: int):
    cfg = load_config("deploy/configs/tiny.yaml", ["rollout.group_size=2"])
    workers = [ray.remote(WaitWorker).options(num_cpus=0).remote(i, s) for i, s in enumerate(seconds)]
    ray.get([w.ready.remote() for w in workers])  # all started: process start-up skew is not the point here
    return RolloutPool(lambda i: None, workers, Weights(), build_plan(cfg), 2, units_per_worker=units), workers


def units_by_worker(batches) -> dict[int, int]:
    out = {}
    for b in batches:
        out[b.info["worker"]] = out.get(b.info["worker"], 0) + 1
    return out


def test_slow_worker_runs_fewer_units_and_every_group_runs_once():
    # 3 workers, 4 units each = 12 units of one group; worker 0 takes 1.5 s a unit, the others 0.05 s:
    # while worker 0 runs its first unit the others can run all 11 others
    pool, workers = make_pool([1.5, 0.05, 0.05], units=4)
    groups = [(g, f"prompt {g}") for g in range(12)]
    batches = pool.collect(pool.launch(groups, 0, preview=True))
    done = sorted(g for b in batches for g in b.info["groups"])
    assert done == list(range(12))  # each group exactly once: none lost, none duplicated
    assert [g for b in batches for g, _ in b.groups] == list(range(12))  # batches in group order
    counts = units_by_worker(batches)
    assert sum(counts.values()) == 12
    assert counts.get(0, 0) < min(counts[1], counts[2])  # the slow worker ran fewer units
    assert [b.preview for b in batches] == [True] + [False] * 11
    assert pool.queue == [] and pool.in_flight == []
    for w in workers:
        ray.kill(w)


def test_one_unit_per_worker_is_the_static_split():
    pool, workers = make_pool([0.01, 0.01], units=1)
    groups = [(g, "p") for g in range(5)]
    batches = pool.collect(pool.launch(groups, 0, preview=False))
    assert [b.info["groups"] for b in batches] == [[0, 1], [2, 3, 4]]
    assert [b.info["worker"] for b in batches] == [0, 1]
    for w in workers:
        ray.kill(w)


def test_async_launches_queue_behind_older_ones_and_are_collected_in_order():
    # iteration 1 is launched while iteration 0 still runs (async mode): collecting 0 returns
    # only 0's groups; collecting 1 afterwards returns 1's, each once, all units accounted for
    pool, workers = make_pool([0.05, 0.05], units=3)
    first = pool.launch([(g, "a") for g in range(6)], 0, preview=False)
    second = pool.launch([(g, "b") for g in range(6)], 1, preview=False)
    assert len(pool.queue) == 10  # two units running, ten waiting
    got0 = pool.collect(first)
    assert sorted(g for b in got0 for g in b.info["groups"]) == list(range(6))
    assert {b.info["iteration"] for b in got0} == {0}
    got1 = pool.collect(second)
    assert sorted(g for b in got1 for g in b.info["groups"]) == list(range(6))
    assert {b.info["iteration"] for b in got1} == {1}
    assert pool.queue == [] and pool.in_flight == []
    for w in workers:
        ray.kill(w)


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
