"""Scorer replicas: how an iteration's images are shared among a scorer's reward actors, and what
the replicas reserve. The replicas themselves, through Ray (each scores its share, the rewards
return in their rows, a dead one is replaced): tests/e2e/test_operating.py."""

import numpy as np
import pytest

from orchestrator.cluster import check_fits, resource_demand, shares
from orchestrator.config import load_config
from orchestrator.errors import ConfigError, UserError


def test_shares_by_hand():
    # 12 rows in two batches of 6, 3 replicas: rows [0, 4), [4, 8), [8, 12)
    assert shares([6, 6], 3) == [[(0, 0, 4)], [(0, 4, 6), (1, 0, 2)], [(1, 2, 6)]]
    assert shares([5, 3], 1) == [[(0, 0, 5), (1, 0, 3)]]  # one replica: every batch whole, in order
    # 8 rows, 3 replicas: [0, 2), [2, 5), [5, 8) (r·n // R)
    assert shares([8], 3) == [[(0, 0, 2)], [(0, 2, 5)], [(0, 5, 8)]]
    # more replicas than rows: the extra ones get nothing
    assert shares([1, 1], 3) == [[], [(0, 0, 1)], [(1, 0, 1)]]
    assert shares([0, 4], 2) == [[(1, 0, 2)], [(1, 2, 4)]]  # an empty batch is skipped


@pytest.mark.parametrize("seed", range(20))
def test_shares_cover_every_row_once_in_order_and_evenly(seed):
    rng = np.random.default_rng(seed)
    sizes = [int(n) for n in rng.integers(0, 40, size=int(rng.integers(1, 8)))]
    replicas = int(rng.integers(1, 12))
    parts = shares(sizes, replicas)
    assert len(parts) == replicas
    rows = [(i, j) for share in parts for i, start, stop in share for j in range(start, stop)]
    assert rows == [(i, j) for i, n in enumerate(sizes) for j in range(n)]
    counts = [sum(stop - start for _, start, stop in share) for share in parts]
    assert max(counts) - min(counts) <= 1
    assert all(start < stop for share in parts for _, start, stop in share)


def test_replicas_reserve_their_resources_each():
    cfg = load_config(
        "deploy/configs/tiny_text.yaml",
        ["reward.scorers=[{name: ocr, kind: ocr, num_cpus: 1.5, replicas: 3}]"],
    )
    asks = dict(resource_demand(cfg)["CPU"])
    assert asks["reward.scorers 'ocr' replicas 3 × num_cpus 1.5"] == 4.5
    with pytest.raises(
        UserError,
        match=r"reserve 4.501 CPU but the Ray cluster has 4: .*"
        r"reward.scorers 'ocr' replicas 3 × num_cpus 1.5 \(4.5\)",
    ):
        check_fits(cfg, {"CPU": 4})
    check_fits(cfg, {"CPU": 5})


def test_replicas_below_one_are_refused_naming_the_field():
    with pytest.raises(
        ConfigError, match=r"reward.scorers.0.replicas: Input should be greater than or equal to 1"
    ):
        load_config("deploy/configs/tiny.yaml", ["reward.scorers=[{name: p, kind: preference, replicas: 0}]"])


def test_a_checkpoint_from_before_replicas_resumes_without_a_config_change():
    """A checkpoint's config.yaml written before scorers had `replicas` (or any field added since)
    is read with that field's default: --resume sees no change, and real changes still show."""
    import yaml

    from orchestrator.config import dump_config
    from orchestrator.rundir import config_changes

    cfg = load_config("deploy/configs/tiny.yaml", [])  # every scorer on the default, 1 replica
    old = yaml.safe_load(dump_config(cfg))
    for scorer in [*old["reward"]["scorers"], *old["reward"]["heldout"]]:
        del scorer["replicas"]
    assert config_changes(yaml.safe_dump(old), cfg) == []
    old["learner"]["lr"] = 1e-3
    assert config_changes(yaml.safe_dump(old), cfg) == [("learner.lr", 1e-3, 1e-4)]
    old["learner"]["no_such_field"] = 1  # a config this version refuses is compared as written
    assert [c[0] for c in config_changes(yaml.safe_dump(old), cfg)] == [
        "learner.lr",
        "learner.no_such_field",
        "reward.heldout",
        "reward.scorers",
    ]
