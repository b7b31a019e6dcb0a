import subprocess
import sys
import time

import pytest

import yaml

from orchestrator.config import PRESETS, ConfigError, build_plan, dump_config, load_config, unused_settings
from orchestrator.__main__ import main

TINY = "deploy/configs/tiny.yaml"


ALGOS = ["dance_grpo", "chunk_grpo", "e_grpo", "flow_grpo", "mix_grpo"]
# fields the presets own (orchestrator/config.py PRESETS): tiny.yaml sets none of them
PRESET_FIELDS = {".".join(path) for preset in PRESETS.values() for path in preset}


def test_tiny_config_pins_no_algorithm_knob_and_each_preset_is_its_paper():
    sources = load_config(TINY).sources
    assert {f for f in PRESET_FIELDS if sources[f].startswith("file")} == set()
    for algorithm in ALGOS:
        cfg = load_config(TINY, [f"algorithm={algorithm}"])
        for path, (value, _) in PRESETS[algorithm].items():
            section = cfg
            for key in path:
                section = getattr(section, key)
            assert section == value, (algorithm, path)
            assert cfg.sources[".".join(path)].startswith(f"preset {algorithm}: ")
    dance = load_config(TINY, ["algorithm=dance_grpo"])
    assert (dance.rollout.sde_kind, dance.rollout.noise_level, dance.learner.timestep_fraction) == (
        "dance",
        0.3,
        0.6,
    )
    assert (dance.learner.minibatches, dance.learner.minibatch_order) == (3, "in_order")
    default = load_config(TINY)  # the measured recipe (issue 14): MixGRPO with LoRA, not a pinned knob
    assert (default.algorithm, default.model.finetune, default.learner.lr) == ("mix_grpo", "lora", 1e-4)
    assert default.sources["rollout.sde_window"].startswith("preset mix_grpo: ")
    chunk = load_config(TINY, ["algorithm=chunk_grpo"])
    assert chunk.algorithm == "chunk_grpo" and (chunk.learner.chunks.mode, chunk.learner.chunks.sizes) == (
        "scaled",
        [2, 3, 4, 7],
    )
    assert (chunk.learner.clip_range, chunk.learner.max_grad_norm, chunk.learner.timestep_fraction) == (
        5e-5,
        0.01,
        0.5,
    )
    e = load_config(TINY, ["algorithm=e_grpo"])
    assert build_plan(e).windows == ((0, 1), (1, 2), (2, 4), (3, 5), (4, 6), (5, 8))  # 12 steps, τ 2.2
    assert build_plan(load_config(TINY, ["algorithm=mix_grpo"])).at(25).trainable[:6] == (
        False,
        True,
        True,
        True,
        True,
        False,
    )


def test_the_user_wins_over_the_preset_and_sources_say_who_set_what():
    cfg = load_config(TINY, ["algorithm=dance_grpo", "rollout.noise_level=0.5", "learner.minibatches=null"])
    assert cfg.rollout.noise_level == 0.5 and cfg.learner.minibatches == 3  # null = not set: the preset's
    src = cfg.sources
    assert src["rollout.noise_level"] == "command line" and src["algorithm"] == "command line"
    assert src["learner.minibatches"].startswith("preset dance_grpo: XueZeyue/DanceGRPO@15cc71d")
    assert src["learner.lr"] == f"file {TINY}" and src["rollout.num_steps"] == f"file {TINY}"
    assert src["reward.scorers"] == f"file {TINY}" and src["learner.zero_stage"] == "default"
    assert set(src) >= {"model.path", "orchestrator.seed", "learner.chunks.mode"}


def test_run_dir_gets_config_and_sources(tmp_path):
    from orchestrator.run import Run

    cfg = load_config(TINY, ["algorithm=flow_grpo", "learner.kl_coef=0.01", "orchestrator.dashboard=false"])
    run = Run(cfg, tmp_path, resume=False)
    run.close()
    written = yaml.safe_load((tmp_path / "config.yaml").read_text())
    sources = yaml.safe_load((tmp_path / "config_sources.yaml").read_text())
    assert written["learner"]["kl_coef"] == 0.01 and sources["learner.kl_coef"] == "command line"
    assert written["learner"]["advantage_std"] == "batch" and sources["learner.advantage_std"].startswith(
        "preset flow_grpo"
    )


def test_overrides_parse_as_yaml_and_config_is_frozen():
    cfg = load_config(
        TINY,
        [
            "learner.lr=3e-4",
            "algorithm=chunk_grpo",
            "learner.chunks.mode=fixed",
            "learner.chunks.sizes=[5, 6]",
            "orchestrator.iterations=3",
        ],
    )
    assert cfg.learner.lr == 3e-4 and cfg.learner.chunks.sizes == [5, 6]
    with pytest.raises(Exception):
        cfg.learner.lr = 1.0
    assert "lr: 0.0003" in dump_config(cfg)


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (["learner.lrr=1e-4"], "learner.lrr: unknown field"),
        (
            ["algorithm=chunk_grpo", "learner.chunks.mode=fixed", "learner.chunks.sizes=[2, 3, 4]"],
            "chunk sizes [2, 3, 4] sum to 9 but the plan trains 11 transitions; set learner.chunks.sizes",
        ),
        (["rollout.group_size=1"], "rollout.group_size"),
        (["orchestrator.train_prompts=/nowhere.txt"], "orchestrator.train_prompts: no file /nowhere.txt"),
        (["algorithm=ppo"], "algorithm"),
        (["rollout.sde_kind=ddim"], "rollout.sde_kind"),
        (["algorithm=dance_grpo", "learner.chunks.mode=fixed"], "learner.chunks.sizes is not set"),
        (["rollout.ode_last_step=true"], "rollout.ode_last_step was removed"),
        (["learner.chunks.profile=p.json"], "learner.chunks.profile was removed"),
        (
            ["algorithm=e_grpo", "rollout.entropy_threshold=40"],
            "rollout.entropy_threshold 40.0: the window of step 0 reaches σ = 0",
        ),
        (["algorithm=e_grpo", "learner.chunks.mode=adaptive"], "set learner.chunks.mode: step"),
        (
            ["learner.chunks.mode=adaptive", "reward.chunk_weights=[{alignment: 1.0}]"],
            "reward.chunk_weights needs the same chunks in every trajectory",
        ),
        (["learner.minibatch_order=column"], "need E-GRPO's columns"),
        (
            ["algorithm=mix_grpo", "learner.chunks.mode=fixed", "learner.chunks.sizes=[2, 2]"],
            "sliding window's length",
        ),
        (
            ["algorithm=chunk_grpo", "reward.chunk_weights=[{alignment: 1.0}]"],
            "reward.chunk_weights has 1 mixes but the plan has 4 chunks",
        ),
    ],
)
def test_bad_config_errors_name_the_field_and_fix(overrides, needle):
    with pytest.raises(ConfigError) as err:
        load_config(TINY, overrides)
    assert needle in str(err.value)


def test_chunk_fields_the_mode_never_reads_are_reported_with_the_fix(tmp_path, capsys, monkeypatch):
    [line] = unused_settings(load_config(TINY, ["algorithm=e_grpo", "learner.chunks.sizes=[2, 2]"]))
    assert line == (
        "learner.chunks.sizes [2, 2] (command line) is not used: learner.chunks.mode is 'step' "
        "(algorithm e_grpo), and only mode fixed / scaled reads it; remove it (an E-GRPO member "
        "trains its one window step)"
    )
    [line] = unused_settings(load_config(TINY, ["algorithm=dance_grpo", "learner.chunks.size=3"]))
    assert line.startswith("learner.chunks.size 3 (command line) is not used: learner.chunks.mode is 'step'")
    assert line.endswith("only mode uniform reads it; remove it, or set that mode")
    # read by its mode, or left to the preset (adaptive keeps chunk_grpo's sizes unread): nothing to say
    for overrides in (
        ["algorithm=chunk_grpo", "learner.chunks.mode=uniform", "learner.chunks.size=3"],
        ["algorithm=chunk_grpo", "learner.chunks.mode=fixed", "learner.chunks.sizes=[5, 6]"],
        ["algorithm=chunk_grpo", "learner.chunks.mode=adaptive"],
        [],
    ):
        assert unused_settings(load_config(TINY, overrides)) == [], overrides
    # a run's own config.yaml (every field written out) reports nothing for its preset's values
    written = tmp_path / "config.yaml"
    written.write_text(
        dump_config(load_config(TINY, ["algorithm=chunk_grpo", "learner.chunks.mode=adaptive"]))
    )
    assert unused_settings(load_config(written)) == []
    # rollout fields of another plan, and minibatches under E-GRPO's per-column steps
    [line] = unused_settings(load_config(TINY, ["algorithm=dance_grpo", "rollout.entropy_threshold=2.0"]))
    assert line == (
        "rollout.entropy_threshold 2.0 (command line) is not used: rollout.plan is 'sde' (algorithm "
        "dance_grpo), and only plan 'entropy_windows' reads it; remove it, or set "
        "rollout.plan=entropy_windows"
    )
    [line] = unused_settings(load_config(TINY, ["algorithm=e_grpo", "rollout.window_stride=2"]))
    assert line.startswith(
        "rollout.window_stride 2 (command line) is not used: rollout.plan is 'entropy_windows'"
    )
    [line] = unused_settings(load_config(TINY, ["algorithm=e_grpo", "learner.minibatches=4"]))
    assert line.startswith(
        "learner.minibatches 4 (command line) is not used: learner.minibatch_order is 'column'"
    )
    for overrides in (  # read by the run's plan / order
        ["algorithm=e_grpo", "rollout.entropy_threshold=2.0"],
        ["algorithm=mix_grpo", "rollout.window_stride=2"],
        ["algorithm=flow_grpo", "learner.minibatches=4"],
    ):
        assert unused_settings(load_config(TINY, overrides)) == [], overrides
    for algorithm in PRESETS:  # a run's own config.yaml, under every preset
        written.write_text(dump_config(load_config(TINY, [f"algorithm={algorithm}"])))
        assert unused_settings(load_config(written)) == [], algorithm
    # the CLI prints it before anything starts (stopped here where it would connect to Ray)
    import orchestrator.__main__ as cli

    def stop(*args, **kwargs):
        raise SystemExit(3)

    monkeypatch.setattr(cli, "connect_ray", stop)
    with pytest.raises(SystemExit):
        main(
            [
                "train",
                "--config",
                TINY,
                "--run-dir",
                str(tmp_path / "run"),
                "algorithm=e_grpo",
                "learner.chunks.sizes=[2, 2]",
            ]
        )
    assert (
        "raygrpo: warning: learner.chunks.sizes [2, 2] (command line) is not used" in capsys.readouterr().err
    )


def test_cli_rejects_bad_config_before_starting_ray(capsys, monkeypatch):
    import ray

    import orchestrator.__main__ as cli

    started = []
    monkeypatch.setattr(ray, "init", lambda *a, **k: started.append("ray.init"))
    monkeypatch.setattr(cli, "connect_ray", lambda *a, **k: started.append("connect_ray"))
    start = time.time()
    code = main(
        [
            "train",
            "--config",
            TINY,
            "algorithm=chunk_grpo",
            "learner.chunks.mode=fixed",
            "learner.chunks.sizes=[1]",
        ]
    )
    assert code == 2
    assert "learner.chunks.sizes" in capsys.readouterr().err
    assert time.time() - start < 5
    assert started == []  # the config was rejected before any Ray call


def test_cli_entry_point_is_installed():
    out = subprocess.run([sys.executable, "-m", "orchestrator", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "train" in out.stdout and "eval" in out.stdout
