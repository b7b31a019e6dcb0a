import subprocess
import sys
import time

import pytest

from orchestrator.config import ConfigError, build_plan, dump_config, load_config
from orchestrator.__main__ import main

TINY = "deploy/configs/tiny.yaml"


def test_tiny_config_and_presets():
    cfg = load_config(TINY)
    plan = build_plan(cfg)
    assert cfg.algorithm == "chunk_grpo"
    assert plan.num_transitions == 12 and not plan.sde[-1]  # ode_last_step
    assert [plan.chunk_ids.count(j) for j in range(4)] == [2, 3, 3, 3]
    dance = load_config(None, ["algorithm=dance_grpo"])
    assert dance.rollout.sde_kind == "dance" and dance.rollout.noise_level == 0.3
    assert dance.learner.timestep_fraction == 0.6 and dance.learner.train_last_step is False
    # a preset never overrides what the user set
    assert load_config(None, ["algorithm=dance_grpo", "rollout.noise_level=0.5"]).rollout.noise_level == 0.5


def test_overrides_parse_as_yaml_and_config_is_frozen():
    cfg = load_config(TINY, ["learner.lr=3e-4", "learner.chunks.sizes=[5, 6]", "orchestrator.iterations=3"])
    assert cfg.learner.lr == 3e-4 and cfg.learner.chunks.sizes == [5, 6]
    with pytest.raises(Exception):
        cfg.learner.lr = 1.0
    assert "lr: 0.0003" in dump_config(cfg)


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (["learner.lrr=1e-4"], "learner.lrr: unknown field"),
        (["learner.chunks.sizes=[2, 3, 4]"], "chunk sizes [2, 3, 4] sum to 9 but the plan trains 11 transitions; set learner.chunks.sizes"),
        (["rollout.group_size=1"], "rollout.group_size"),
        (["learner.train_last_step=true"], "set learner.train_last_step: false"),
        (["orchestrator.train_prompts=/nowhere.txt"], "orchestrator.train_prompts: no file /nowhere.txt"),
        (["algorithm=ppo"], "algorithm"),
        (["rollout.sde_kind=ddim"], "rollout.sde_kind"),
        (["learner.chunks.mode=fixed", "learner.chunks.sizes=null"], "learner.chunks.sizes is not set"),
    ],
)
def test_bad_config_errors_name_the_field_and_fix(overrides, needle):
    with pytest.raises(ConfigError) as err:
        load_config(TINY, overrides)
    assert needle in str(err.value)


def test_cli_rejects_bad_config_before_starting_ray(capsys, monkeypatch):
    import ray

    import orchestrator.__main__ as cli

    started = []
    monkeypatch.setattr(ray, "init", lambda *a, **k: started.append("ray.init"))
    monkeypatch.setattr(cli, "connect_ray", lambda *a, **k: started.append("connect_ray"))
    start = time.time()
    code = main(["train", "--config", TINY, "learner.chunks.sizes=[1]"])
    assert code == 2
    assert "learner.chunks.sizes" in capsys.readouterr().err
    assert time.time() - start < 5
    assert started == []  # the config was rejected before any Ray call


def test_cli_entry_point_is_installed():
    out = subprocess.run([sys.executable, "-m", "orchestrator", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "train" in out.stdout and "eval" in out.stdout
