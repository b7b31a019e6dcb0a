"""The model scorers with their model on a device (the meta device, tests/fixtures/meta.py): every
input reaches the model's device and the rewards come back to the host, [B] float32. Values are
checked on the CPU by tests/reward/test_scorers.py."""

import numpy as np
import pytest

from reward.config import ScorerConfig
from reward.worker import SCORERS
from tests.fixtures.meta import MetaHost

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("kind", ["hpsv3", "clip", "imagereward"])
def test_scorer_with_its_model_on_a_device(kind, reward_models):
    path, base = reward_models[kind]
    scorer = SCORERS[kind](ScorerConfig(name=kind, kind=kind, path=path, base=base, batch_size=2), "meta")
    images = np.random.default_rng(0).integers(0, 256, (3, 40, 32, 3), dtype=np.uint8)
    with MetaHost():
        rewards = scorer.score(images, ["a red circle", "a blue square", "a green triangle"])
    assert rewards.shape == (3,) and rewards.dtype == np.float32
    assert {p.device.type for p in scorer.model.parameters()} == {"meta"}
