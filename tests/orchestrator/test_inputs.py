"""Bad input, fed as a user would: each is refused before Ray starts, naming the field, the
place and the fix (orchestrator/inputs.py). Rows of docs/bad-inputs.md point here."""

import json
from pathlib import Path

import pytest

import orchestrator.__main__ as cli
from orchestrator.__main__ import main
from orchestrator.config import ConfigError, load_config
from orchestrator.inputs import confirm_hub_id, is_local, preflight, upload_exclusion

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "deploy/configs/tiny.yaml")
FLUX = str(ROOT / "deploy/configs/flux_dance_grpo.yaml")


@pytest.fixture
def no_ray(monkeypatch):
    """Records any attempt to start Ray: a test asserts the list stays empty."""
    import ray

    calls = []
    monkeypatch.setattr(ray, "init", lambda *a, **k: calls.append("ray.init"))
    monkeypatch.setattr(cli, "connect_ray", lambda *a, **k: calls.append("connect_ray"))
    return calls


def refused(capsys, no_ray, *argv) -> str:
    """Run `raygrpo train ARGV`; assert it exits 2 before Ray; return its one-message stderr."""
    assert main(["train", *argv]) == 2
    assert no_ray == []
    err = capsys.readouterr().err
    assert err.startswith("raygrpo: ") and "Traceback" not in err
    return err


def test_malformed_yaml_names_file_line_and_column(tmp_path, capsys, no_ray):
    bad = tmp_path / "bad.yaml"
    bad.write_text("algorithm: chunk_grpo\nlearner:\n  lr: 1.0e-4\n   clip_range: 1.0e-4\n")
    err = refused(capsys, no_ray, "--config", str(bad), "--run-dir", str(tmp_path / "run"))
    assert f"{bad}:4:" in err and "mapping values are not allowed" in err
    assert not (tmp_path / "run").exists()  # nothing written


def test_duplicate_key_names_the_key_and_both_lines(tmp_path, capsys, no_ray):
    dup = tmp_path / "dup.yaml"
    dup.write_text("learner:\n  lr: 1.0e-4\n  clip_range: 1.0e-4\n  lr: 3.0e-4\n")
    err = refused(capsys, no_ray, "--config", str(dup))
    assert f"{dup}:4:3: duplicate key 'lr' (first at line 2)" in err


def test_override_that_is_not_yaml():
    with pytest.raises(ConfigError, match=r"override 'learner.chunks.sizes=\[2, 3': the value is not valid YAML"):
        load_config(TINY, ["learner.chunks.sizes=[2, 3"])


@pytest.mark.parametrize("text", ["", "\n\n", "# prompts go here\n   \n# one a line\n"])
def test_empty_or_comment_only_prompt_file_is_refused_before_ray(tmp_path, capsys, no_ray, text):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(text)
    err = refused(capsys, no_ray, "--config", TINY, "--run-dir", str(tmp_path / "run"),
                  f"orchestrator.train_prompts={prompts}")
    assert f"orchestrator.train_prompts: {prompts} holds no prompts" in err and "one prompt a line" in err
    assert not (tmp_path / "run").exists()  # no run dir left behind


def test_prompt_outside_the_alignment_grammar_names_the_line(tmp_path, capsys, no_ray):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle at the top left on a blue background\n# a comment\na photo of a cat\n")
    err = refused(capsys, no_ray, "--config", TINY, f"orchestrator.eval_prompts={prompts}")
    assert f"orchestrator.eval_prompts: {prompts}:3: 1 of 2 prompts are outside the alignment grammar" in err
    assert "'a photo of a cat'" in err and "remove it from reward.scorers" in err
    # the same prompts are fine for a config without the alignment scorer
    cfg = load_config(TINY, [f"orchestrator.eval_prompts={prompts}",
                             "reward.scorers=[{name: preference, kind: preference}]"])
    assert cfg.reward.scorers[0].name == "preference"


def test_missing_local_model_path_is_never_taken_for_a_hub_id(tmp_path, monkeypatch, capsys, no_ray):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()  # `models/flux` then reads as a local path, and it does not exist
    err = refused(capsys, no_ray, "--config", TINY, "model.path=models/flux")
    assert "model.path 'models/flux': no such directory" in err and "because models/ is a directory here" in err
    err = refused(capsys, no_ray, "--config", TINY, "model.path=./flux")
    assert "model.path './flux': no such directory" in err
    (tmp_path / "models" / "flux").mkdir()
    err = refused(capsys, no_ray, "--config", TINY, "model.path=models/flux")
    assert "neither raygrpo_model.json nor model_index.json" in err


def test_hub_ids_are_confirmed_before_ray(tmp_path, monkeypatch, capsys, no_ray):
    """`models/flux` with no ./models is owner/name: it must be in the HF cache or on the hub."""
    from huggingface_hub import constants

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # no network in CI: the cache decides
    confirm_hub_id.cache_clear()
    assert is_local("./x") and is_local("a/b/c") and not is_local("models/flux")
    cfg = load_config(TINY, ["model.path=models/flux"])  # the config alone cannot tell
    with pytest.raises(ConfigError, match=r"model.path 'models/flux': not a local path, and not in the Hugging "
                                          r"Face cache .*a value reads as a hub id when it is owner/name"):
        preflight(cfg)
    err = refused(capsys, no_ray, "--config", TINY, "model.path=models/flux")
    assert "hf download models/flux" in err
    (tmp_path / "hf" / "models--models--flux").mkdir(parents=True)  # now cached: accepted
    confirm_hub_id.cache_clear()
    preflight(cfg)


def test_scorer_paths_are_checked(tmp_path, reward_models):
    with pytest.raises(ConfigError, match=r"reward.scorers\[0\] \(clip\).path '/nowhere/clip': no such file"):
        load_config(TINY, ["reward.scorers=[{name: clip, kind: clip, path: /nowhere/clip}]"])
    empty = tmp_path / "hps"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"\(hps\).path .* has no HPSv3.safetensors"):
        load_config(TINY, [f"reward.scorers=[{{name: hps, kind: hpsv3, path: {empty}}}]"])
    clip, _ = reward_models["clip"]
    load_config(TINY, [f"reward.scorers=[{{name: clip, kind: clip, path: {clip}}}]"])


def test_deploy_config_with_an_excluded_relative_embeddings_path_is_refused(capsys, no_ray):
    """The deploy configs' old pattern: a cache under runs/, which .gitignore and
    deploy/runtime_env.yaml keep out of the working-dir upload, so no actor could open it."""
    err = refused(capsys, no_ray, "--config", FLUX, "model.embeddings=runs/embeddings/flux_dev")
    assert "model.embeddings 'runs/embeddings/flux_dev' is a relative path that Ray's working-dir upload leaves out" in err
    assert "runs/embeddings is excluded by" in err
    assert "model.embeddings: /mnt/runs/embeddings/flux_dev" in err  # the fix, spelled out
    load_config(FLUX)  # as shipped: an absolute path on the shared mount


def test_upload_exclusion_follows_rays_rules(tmp_path, monkeypatch):
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "runtime_env.yaml").write_text("working_dir: .\nexcludes:\n  - bench/results/tmp/\n")
    (tmp_path / ".gitignore").write_text("/runs/\n*.bin\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / ".gitignore").write_text("cache/\n")
    assert upload_exclusion("runs/emb", tmp_path) == "runs/emb is excluded by .gitignore"
    assert upload_exclusion("data/cache/x", tmp_path) == "data/cache/x is excluded by data/.gitignore"
    assert "runtime_env.yaml" in upload_exclusion("bench/results/tmp/e", tmp_path)
    assert "outside the working dir" in upload_exclusion("../emb", tmp_path)
    assert upload_exclusion("data/emb", tmp_path) is None and upload_exclusion("emb/runs", tmp_path) is None
    monkeypatch.setenv("RAY_RUNTIME_ENV_IGNORE_GITIGNORE", "1")  # Ray then uploads ignored files too
    assert upload_exclusion("runs/emb", tmp_path) is None


def test_embedding_cache_without_the_prompts_is_refused_before_ray(tmp_path, capsys, no_ray):
    emb = tmp_path / "emb"
    err = refused(capsys, no_ray, "--config", TINY, f"model.embeddings={emb}")
    assert f"model.embeddings '{emb}': no index.json there (no such directory)" in err and "raygrpo embed" in err
    emb.mkdir()
    (emb / "index.json").write_text(json.dumps({"kind": "tiny", "model": "tiny", "fields": [],
                                                "prompts": {"a red circle at the top left on a blue background": []}}))
    err = refused(capsys, no_ray, "--config", TINY, f"model.embeddings={emb}")
    assert "lacks 404 prompt(s) of orchestrator.train_prompts" in err  # 405 train prompts, 1 cached
    (emb / "index.json").write_text(json.dumps({"kind": "flux", "model": "x", "fields": [], "prompts": {}}))
    err = refused(capsys, no_ray, "--config", TINY, f"model.embeddings={emb}")
    assert "holds flux embeddings but model.path 'tiny' is a tiny model" in err


def test_more_learner_minibatches_than_samples_is_a_config_error():
    # 2 prompts × 4 samples = 8 samples; 3 ranks × 3 minibatches = 9 minibatches
    with pytest.raises(ConfigError, match=r"learner.world_size 3 × learner.minibatches 3 = 9 minibatches, but an "
                                          r"iteration has only 8 samples"):
        load_config(TINY, ["orchestrator.prompts_per_iter=2", "rollout.group_size=4", "learner.world_size=3",
                           "learner.minibatches=3"])
    load_config(TINY, ["orchestrator.prompts_per_iter=2", "rollout.group_size=4", "learner.world_size=2",
                       "learner.minibatches=4"])


def test_eval_prompts_argument_is_checked(tmp_path, capsys):
    empty = tmp_path / "p.txt"
    empty.write_text("# nothing\n")
    assert main(["eval", "--checkpoint", "base", "--prompts", str(empty)]) == 2
    assert f"--prompts: {empty} holds no prompts" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", "base", "--prompts", str(tmp_path / "none.txt")]) == 2
    assert "no file" in capsys.readouterr().err


def test_unexpected_exceptions_keep_their_traceback(monkeypatch):
    """Only errors worded for the user are caught: a KeyError bug is not one (no broad LookupError)."""
    def buggy(*args, **kwargs):
        return {}["missing"]

    monkeypatch.setattr(cli, "load_config", buggy)
    with pytest.raises(KeyError, match="missing"):
        main(["train", "--config", TINY])


def test_overrides_may_follow_flags(tmp_path, capsys, no_ray):
    err = refused(capsys, no_ray, "--config", TINY, "--run-dir", str(tmp_path), "learner.lrr=1")
    assert "learner.lrr: unknown field" in err
    err = refused(capsys, no_ray, "--config", TINY, "--resume", "learner.lrr=1")  # after --resume too
    assert "learner.lrr: unknown field" in err
