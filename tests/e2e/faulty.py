"""Actor classes that misbehave the way real ones do, for the never-silent tests: each is the
real worker with one fault at the result level (Cluster / LocalCluster take them through
`rollout_cls` / `reward_cls`). Ray pickles them by value, so worker processes need not import
the tests package."""

import numpy as np

from reward.worker import RewardWorker
from rollout.worker import RolloutWorker


class DoublingRollout(RolloutWorker):
    """Rolls out (and reports) its first group twice, as a buggy re-run or retry would."""

    def rollout(self, groups, iteration, preview=False):
        return super().rollout(list(groups) + list(groups[:1]), iteration, preview)


class LosingRollout(RolloutWorker):
    """Drops its last group when it has more than one (a lost result)."""

    def rollout(self, groups, iteration, preview=False):
        return super().rollout(list(groups)[:-1] if len(groups) > 1 else groups, iteration, preview)


class UnboundLoraRollout(RolloutWorker):
    """Loads the learner's LoRA weights into adapters the forward never runs (adapters disabled):
    the state dict, and so its checksum, matches the learner's; the images do not change."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.policy.module.disable_adapters()


class NaNOnSecondCall(RewardWorker):
    """Returns NaN rewards from its second call on (a reward model that overflowed)."""

    calls = 0

    def score(self, images, prompts):
        self.calls += 1
        rewards = super().score(images, prompts)
        return np.full_like(rewards, np.nan) if self.calls >= 2 else rewards


class FailingOnSecondCall(RewardWorker):
    """Raises from its second call on, as a reward server that went away would."""

    calls = 0

    def score(self, images, prompts):
        self.calls += 1
        if self.calls >= 2:
            raise ConnectionError("reward server at http://scorer:8000 answered 503 Service Unavailable")
        return super().score(images, prompts)


def register_by_value() -> None:
    import sys

    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
