"""DeepSpeed's ZeRO optimizer state holds a ZeroStageEnum member. Python 3.11.0-3.11.4 (Debian
12 ships 3.11.2) pickle enum members as `getattr(cls, name)`, which `torch.load(weights_only=
True)` refuses, so every resume failed on a fresh Debian 12. The learner's checkpoint engine
saves enum members as their values; this test pickles the member the 3.11.2 way on any Python."""

import pickle

import pytest
import torch
from deepspeed.runtime.zero.config import ZeroStageEnum

from learner.engine import _deepspeed_safe_globals, enum_values


@pytest.fixture
def python_3_11_2_enum_pickling(monkeypatch):
    monkeypatch.setattr(
        ZeroStageEnum, "__reduce_ex__", lambda self, proto: (getattr, (type(self), self._name_))
    )


def weights_only_load(path):
    with torch.serialization.safe_globals(_deepspeed_safe_globals()):
        return torch.load(path, weights_only=True)


def test_enum_members_are_saved_as_values(tmp_path, python_3_11_2_enum_pickling):
    state = {
        "zero_stage": ZeroStageEnum.gradients,
        "state": {0: {"exp_avg": torch.ones(3)}},
        "groups": [(1, 2)],
    }
    torch.save(state, tmp_path / "raw.pt")
    with pytest.raises(pickle.UnpicklingError, match="getattr"):  # what a fresh Debian 12 hit on resume
        weights_only_load(tmp_path / "raw.pt")
    torch.save(enum_values(state), tmp_path / "plain.pt")
    loaded = weights_only_load(tmp_path / "plain.pt")
    assert loaded["zero_stage"] == 2 and loaded["zero_stage"] == ZeroStageEnum.gradients
    assert torch.equal(loaded["state"][0]["exp_avg"], torch.ones(3)) and loaded["groups"] == [(1, 2)]
