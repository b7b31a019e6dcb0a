"""The reward-hacking monitor's rule, with hand-made held-out means."""

import pytest

from orchestrator import metrics as M
from orchestrator.config import ConfigError, load_config
from orchestrator.monitor import HackingMonitor

JUDGES = "reward.heldout=[{name: ocr_heldout, kind: ocr_heldout}, {name: fidelity, kind: fidelity}]"


def monitor(*overrides):
    return HackingMonitor(
        load_config("deploy/configs/tiny.yaml", [JUDGES, "orchestrator.heldout_every=5", *overrides])
    )


def test_warns_when_the_training_reward_rises_while_a_judge_falls():
    m = monitor("orchestrator.hacking_tolerance=0.1")
    assert [i for i in range(12) if m.due(i)] == [4, 9]  # after every 5th iteration's update
    m.baseline({"preference": 0.4, "alignment": 0.8, "ocr_heldout": 0.5, "fidelity": 0.70, "seconds": 3.0})
    # training reward 1·0.4 + 1·0.8 = 1.2 -> 1·0.9 + 1·0.8 = 1.7 (rose); fidelity 0.70 -> 0.60
    # is −14 % (beyond 10 %), ocr_heldout 0.5 -> 0.47 is −6 % (within)
    v = m.check(9, {"preference": 0.9, "alignment": 0.8, "ocr_heldout": 0.47, "fidelity": 0.60})
    assert v.row[M.HELDOUT_TRAIN_REWARD] == pytest.approx(1.7)
    assert v.row[M.heldout_mean("fidelity")] == 0.60 and v.row[M.heldout_mean("preference")] == 0.9
    assert v.row[M.HACKING] == 1 and v.fallen == ["fidelity"] and not v.stop
    assert "iteration 9" in v.warning and "fidelity 0.700 -> 0.600 (-14 %)" in v.warning


def test_no_warning_without_a_rise_or_within_the_tolerance():
    m = monitor("orchestrator.hacking_tolerance=0.1")
    m.baseline({"preference": 0.4, "alignment": 0.8, "ocr_heldout": 0.5, "fidelity": 0.70})
    # both judges fell 50 %, but the training reward fell too (1.2 -> 1.0): not hacking, just worse
    v = m.check(4, {"preference": 0.3, "alignment": 0.7, "ocr_heldout": 0.25, "fidelity": 0.35})
    assert v.row[M.HACKING] == 0 and v.warning is None
    # reward rose; fidelity 0.70 -> 0.64 is −8.6 %: within 10 %
    v = m.check(9, {"preference": 0.9, "alignment": 0.8, "ocr_heldout": 0.5, "fidelity": 0.64})
    assert v.row[M.HACKING] == 0 and v.warning is None


def test_hacking_stop_and_its_config_errors():
    m = monitor("orchestrator.hacking_stop=true")
    m.baseline({"preference": 0.4, "alignment": 0.8, "ocr_heldout": 0.5, "fidelity": 0.7})
    assert m.check(4, {"preference": 1.0, "alignment": 0.8, "ocr_heldout": 0.1, "fidelity": 0.7}).stop
    with pytest.raises(ConfigError, match="hacking_stop is true but orchestrator.heldout_every is 0"):
        load_config(
            "deploy/configs/tiny.yaml", ["orchestrator.hacking_stop=true", "orchestrator.heldout_every=0"]
        )
    with pytest.raises(
        ConfigError, match=r"reward.scorers and reward.heldout names must be unique; \['alignment'\]"
    ):
        load_config("deploy/configs/tiny.yaml", ["reward.heldout=[{name: alignment, kind: fidelity}]"])
    with pytest.raises(RuntimeError, match="before baseline"):
        monitor().check(4, {})
