"""Bad input, fed as a user would: each is refused before Ray starts, naming the field, the
place and the fix (orchestrator/inputs.py). Rows of docs/bad-inputs.md point here."""

import json
from pathlib import Path

import pytest

import orchestrator.__main__ as cli
from orchestrator.__main__ import main
from orchestrator.config import ConfigError, load_config
from orchestrator.inputs import (
    check_embeddings,
    confirm_hub_id,
    is_local,
    load_yaml,
    preflight,
    upload_exclusion,
)
from tests.fixtures.stderr import driver_stderr

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
    err = driver_stderr(capsys.readouterr().err)
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


@pytest.mark.parametrize(
    "name, content, needle",
    [
        (
            "list.yaml",
            "- learner\n- rollout\n",
            "list.yaml must hold a mapping (section: fields) at the top level, not a list",
        ),
        (
            "binary.yaml",
            b"\xff\xfe\x00learner",
            "binary.yaml: cannot read it ('utf-8' codec can't decode byte 0xff",
        ),
        (
            "ctrl.yaml",
            "learner:\n  lr: 1\x07\n",
            "ctrl.yaml:2:8: unacceptable character #x0007 (special characters are not allowed); remove it",
        ),
        (
            "tag.yaml",
            "learner: !!python/object/apply:os.system [ls]\n",
            "tag.yaml:1:10: could not determine a constructor",
        ),
        (
            "unhashable.yaml",
            "learner:\n  ? [lr, clip_range]\n  : 1\n",
            "unhashable.yaml:2:5: found unhashable key",
        ),
    ],
)
def test_config_files_yaml_cannot_load(tmp_path, capsys, no_ray, name, content, needle):
    bad = tmp_path / name
    bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    err = refused(capsys, no_ray, "--config", str(bad))
    assert f"raygrpo: config file {tmp_path}/{needle}" in err


def test_config_file_missing_or_a_directory(tmp_path, capsys, no_ray):
    err = refused(capsys, no_ray, "--config", str(tmp_path / "none.yaml"))
    assert f"config file {tmp_path / 'none.yaml'} does not exist; give a YAML file" in err
    err = refused(capsys, no_ray, "--config", str(tmp_path))
    assert f"config file {tmp_path} is a directory" in err


def test_yaml_merge_keys_are_not_duplicates(tmp_path):
    merged = tmp_path / "merged.yaml"
    merged.write_text("common: &lr\n  lr: 3.0e-4\nlearner:\n  <<: *lr\n  clip_range: 2.0e-4\n")
    assert load_yaml(merged)["learner"] == {"lr": 3e-4, "clip_range": 2e-4}
    merged.write_text(
        "common: &lr\n  lr: 3.0e-4\nlearner:\n  <<: *lr\n  lr: 1.0e-4\n"
    )  # an explicit key wins, as in YAML
    assert load_yaml(merged)["learner"] == {"lr": 1e-4}


def test_override_that_is_not_yaml():
    with pytest.raises(
        ConfigError, match=r"override 'learner.chunks.sizes=\[2, 3': the value is not valid YAML"
    ):
        load_config(TINY, ["learner.chunks.sizes=[2, 3"])


@pytest.mark.parametrize("text", ["", "\n\n", "# prompts go here\n   \n# one a line\n"])
def test_empty_or_comment_only_prompt_file_is_refused_before_ray(tmp_path, capsys, no_ray, text):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(text)
    err = refused(
        capsys,
        no_ray,
        "--config",
        TINY,
        "--run-dir",
        str(tmp_path / "run"),
        f"orchestrator.train_prompts={prompts}",
    )
    assert f"orchestrator.train_prompts: {prompts} holds no prompts" in err and "one prompt a line" in err
    assert not (tmp_path / "run").exists()  # no run dir left behind


def test_prompt_outside_the_alignment_grammar_names_the_line(tmp_path, capsys, no_ray):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle at the top left on a blue background\n# a comment\na photo of a cat\n")
    err = refused(capsys, no_ray, "--config", TINY, f"orchestrator.eval_prompts={prompts}")
    assert f"orchestrator.eval_prompts: {prompts}:3: 1 of 2 prompts are outside the alignment grammar" in err
    assert "'a photo of a cat'" in err and "remove it from reward.scorers" in err
    # the same prompts are fine for a config without the alignment scorer
    cfg = load_config(
        TINY,
        [f"orchestrator.eval_prompts={prompts}", "reward.scorers=[{name: preference, kind: preference}]"],
    )
    assert cfg.reward.scorers[0].name == "preference"


def test_prompt_file_that_is_not_text_is_refused(tmp_path, capsys, no_ray):
    prompts = tmp_path / "prompts.txt"
    prompts.write_bytes(b"\xff\xfea red circle at the top left on a blue background\n")  # UTF-16 bytes, say
    err = refused(capsys, no_ray, "--config", TINY, f"orchestrator.train_prompts={prompts}")
    assert f"orchestrator.train_prompts: cannot read {prompts} ('utf-8' codec can't decode byte 0xff" in err


class QuotedTextScorer:
    """A scorer whose class carries the prompt hook, as the OCR scorers do: it reads only
    prompts with a text in double quotes."""

    @staticmethod
    def validate_prompts(prompts: list[str]) -> None:
        for prompt in prompts:
            if prompt.count('"') < 2:
                raise ValueError(f"prompt {prompt!r} names no text in double quotes")


def test_the_scorer_classs_prompt_hook_is_called_for_any_kind(tmp_path, monkeypatch, capsys, no_ray):
    """The driver knows no scorer kind: reward.worker.validate_prompts(cfg, prompts) calls the
    class's static validate_prompts(prompts) when it has one (here for kind preference)."""
    import reward.worker

    assert set(reward.worker.SCORER_CLASSES) == set(reward.worker.SCORERS)  # every kind's class is known
    hooked = [k for k in reward.worker.SCORERS if hasattr(reward.worker.scorer_class(k), "validate_prompts")]
    # fidelity's hook accepts any prompt
    assert hooked == ["alignment", "ocr", "ocr_likelihood", "ocr_heldout", "fidelity"]
    monkeypatch.setitem(reward.worker.SCORER_CLASSES, "preference", f"{__name__}:QuotedTextScorer")
    prompts = tmp_path / "signs.txt"
    prompts.write_text('a sign that says "k7pa"\n\na sign that says k7pa\n')
    only_preference = "reward.scorers=[{name: pref, kind: preference}]"
    err = refused(capsys, no_ray, "--config", TINY, only_preference, f"orchestrator.train_prompts={prompts}")
    assert (
        f"orchestrator.train_prompts: {prompts}:3: prompt 'a sign that says k7pa' names no text "
        "in double quotes. "
        "Reward scorer 'pref' scores these prompts"
    ) in err
    monkeypatch.setitem(reward.worker.SCORER_CLASSES, "preference", "reward.rules:PreferenceScorer")
    load_config(TINY, [only_preference, f"orchestrator.train_prompts={prompts}"])  # no hook: any prompt


def test_missing_local_model_path_is_never_taken_for_a_hub_id(tmp_path, monkeypatch, capsys, no_ray):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()  # `models/flux` then reads as a local path, and it does not exist
    err = refused(capsys, no_ray, "--config", TINY, "model.path=models/flux")
    assert (
        "model.path 'models/flux': no such directory" in err and "because models/ is a directory here" in err
    )
    err = refused(capsys, no_ray, "--config", TINY, "model.path=./flux")
    assert (
        "model.path './flux': no such directory" in err
        and "because it starts with '/', './', '../' or '~'" in err
    )
    err = refused(capsys, no_ray, "--config", TINY, "model.path=my flux")
    assert "model.path 'my flux': no such directory" in err and "because it cannot be a hub id" in err
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
    assert all(map(is_local, ["./x", "../x", "~/x", "/x", ".", "a/b/c", "my model"]))
    assert not is_local("models/flux") and not is_local("bert-base-uncased")
    cfg = load_config(TINY, ["model.path=models/flux"])  # the config alone cannot tell
    with pytest.raises(
        ConfigError,
        match=r"model.path 'models/flux': not a local path, and not in the Hugging "
        r"Face cache .*a value reads as a hub id when it is owner/name",
    ):
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


def test_local_paths_the_upload_leaves_out_are_refused(
    tmp_path, monkeypatch, capsys, no_ray, random_tiny_dir
):
    """A model or scorer base that exists here, under a directory .gitignore keeps out of
    `ray job submit --working-dir .`: no actor on a cluster could open it."""
    import shutil

    monkeypatch.chdir(tmp_path)
    (tmp_path / ".gitignore").write_text("runs/\n")
    shutil.copytree(random_tiny_dir, tmp_path / "runs" / "model")
    err = refused(capsys, no_ray, "--config", TINY, "model.path=runs/model")
    assert (
        "model.path 'runs/model' is a relative path that Ray's working-dir upload leaves out (runs/model is "
        "excluded by .gitignore)" in err
    )
    load_config(TINY, [f"model.path={tmp_path / 'runs' / 'model'}"])  # the same model by its absolute path
    shutil.copytree(random_tiny_dir, tmp_path / "models" / "tiny")
    load_config(TINY, ["model.path=models/tiny"])  # or a relative path the upload carries
    (tmp_path / "runs" / "bert").mkdir()
    scorer = "reward.scorers=[{{name: ir, kind: imagereward, path: {path}, base: {base}}}]"
    ir = tmp_path / "ir"
    ir.mkdir()
    for name in ("ImageReward.pt", "med_config.json"):
        (ir / name).write_text("")
    err = refused(capsys, no_ray, "--config", TINY, scorer.format(path=ir, base="runs/bert"))
    assert (
        "reward.scorers[0] (ir).base 'runs/bert' is a relative path that Ray's working-dir upload leaves out"
        in err
    )
    err = refused(capsys, no_ray, "--config", TINY, scorer.format(path=ir, base="./bert"))
    assert "reward.scorers[0] (ir).base './bert': no such directory" in err
    load_config(TINY, [scorer.format(path=ir, base=tmp_path / "runs" / "bert")])


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """The Hugging Face hub API on loopback (no network here): known/* exist, gated/* are gated,
    anything else is not found. The HF cache is empty."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from huggingface_hub import constants

    class Hub(BaseHTTPRequestHandler):
        def do_GET(self):
            repo = self.path.split("/api/models/", 1)[-1].split("?")[0]
            code, header = {"known": (200, None), "gated": (403, "GatedRepo")}.get(
                repo.split("/")[0], (404, "RepoNotFound")
            )
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            if header:
                self.send_header("X-Error-Code", header)
            self.end_headers()
            self.wfile.write(json.dumps({"id": repo, "private": False}).encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    confirm_hub_id.cache_clear()
    yield constants
    server.shutdown()
    confirm_hub_id.cache_clear()


def test_hub_ids_are_looked_up_on_the_hub(hub, monkeypatch, capsys, no_ray):
    for repo in (
        "known/flux",
        "gated/flux",
    ):  # on the hub (a gated repo exists; the actors' token decides access)
        preflight(load_config(TINY, [f"model.path={repo}"]))
    err = refused(capsys, no_ray, "--config", TINY, "model.path=nobody/flux")
    assert "model.path 'nobody/flux': no local file or directory of that name" in err
    assert "and no hub repository nobody/flux" in err and "fix the path or the hub id" in err
    scorer = "reward.scorers=[{name: ir, kind: imagereward, path: known/ir, base: nobody/bert}]"
    err = refused(capsys, no_ray, "--config", TINY, scorer)
    assert "reward.scorers[0] (ir).base 'nobody/bert': no local file or directory" in err
    monkeypatch.setattr(hub, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens: the hub is unreachable
    err = refused(capsys, no_ray, "--config", TINY, "model.path=other/flux")
    assert (
        "model.path 'other/flux': not a local path, not in the Hugging Face cache, "
        "and the hub cannot be reached "
        "to confirm it (ConnectError" in err
    )


def test_deploy_config_with_an_excluded_relative_embeddings_path_is_refused(capsys, no_ray):
    """The deploy configs' old pattern: a cache under runs/, which .gitignore and
    deploy/runtime_env.yaml keep out of the working-dir upload, so no actor could open it."""
    err = refused(capsys, no_ray, "--config", FLUX, "model.embeddings=runs/embeddings/flux_dev")
    assert (
        "model.embeddings 'runs/embeddings/flux_dev' is a relative path that Ray's working-dir upload "
        "leaves out" in err
    )
    assert "runs/embeddings is excluded by" in err
    assert "model.embeddings: /mnt/runs/embeddings/flux_dev" in err  # the fix, spelled out
    load_config(FLUX)  # as shipped: an absolute path on the shared mount


def test_upload_exclusion_follows_rays_rules(tmp_path, monkeypatch):
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "runtime_env.yaml").write_text(
        "working_dir: .\nexcludes:\n  - bench/results/tmp/\n"
    )
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
    assert (
        f"model.embeddings '{emb}': no index.json there (no such directory)" in err and "raygrpo embed" in err
    )
    emb.mkdir()
    (emb / "index.json").write_text(
        json.dumps(
            {
                "kind": "tiny",
                "model": "tiny",
                "fields": [],
                "prompts": {"a red circle at the top left on a blue background": []},
            }
        )
    )
    err = refused(capsys, no_ray, "--config", TINY, f"model.embeddings={emb}")
    assert "lacks 404 prompt(s) of orchestrator.train_prompts" in err  # 405 train prompts, 1 cached
    (emb / "index.json").write_text(json.dumps({"kind": "flux", "model": "x", "fields": [], "prompts": {}}))
    err = refused(capsys, no_ray, "--config", TINY, f"model.embeddings={emb}")
    assert "holds flux embeddings but model.path 'tiny' is a tiny model" in err


def test_embedding_cache_that_is_unreadable_incomplete_or_lacks_the_negative_prompt(tmp_path, capsys, no_ray):
    from orchestrator.prompts import prompt_path, read_prompts

    train, held = (read_prompts(prompt_path(a)) for a in ("tiny:train", "tiny:heldout"))
    emb = tmp_path / "emb"
    emb.mkdir()
    (emb / "index.json").write_text('{"kind": "tiny", "prompts": ')
    err = refused(capsys, no_ray, "--config", TINY, f"model.embeddings={emb}")
    assert f"model.embeddings '{emb}': index.json is unreadable (" in err

    def index(kind, prompts):
        return json.dumps({"kind": kind, "model": "m", "fields": [], "prompts": dict.fromkeys(prompts, [])})

    (emb / "index.json").write_text(index("tiny", train))
    err = refused(capsys, no_ray, "--config", TINY, f"model.embeddings={emb}")
    assert "lacks 45 prompt(s) of orchestrator.eval_prompts" in err
    (emb / "index.json").write_text(index("tiny", train + held))
    preflight(load_config(TINY, [f"model.embeddings={emb}"]))  # complete: accepted
    # an SD3.5 pipeline says so in model_index.json; its cache needs the negative prompt
    sd3 = tmp_path / "sd3"
    sd3.mkdir()
    (sd3 / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusion3Pipeline"}))
    (emb / "index.json").write_text(index("sd3", train + held))
    err = refused(capsys, no_ray, "--config", TINY, f"model.embeddings={emb}", f"model.path={sd3}")
    assert f"model.embeddings '{emb}' lacks model.negative_prompt" in err
    (emb / "index.json").write_text(index("sd3", train + held + [load_config(TINY).model.negative_prompt]))
    preflight(load_config(TINY, [f"model.embeddings={emb}", f"model.path={sd3}"]))
    check_embeddings(
        load_config(TINY, [f"model.embeddings={emb}", "model.path=owner/sd3"])
    )  # a hub model: kind unknown here


def test_more_learner_minibatches_than_samples_is_a_config_error():
    # 2 prompts × 4 samples = 8 samples; 9 minibatches would leave one optimizer step with none
    with pytest.raises(ConfigError, match=r"learner.minibatches 9 exceeds the 8 samples of an iteration"):
        load_config(
            TINY, ["orchestrator.prompts_per_iter=2", "rollout.group_size=4", "learner.minibatches=9"]
        )
    # 8 minibatches over 3 ranks: some ranks' shares are empty, which the learner handles (zero-weight passes)
    load_config(
        TINY,
        [
            "orchestrator.prompts_per_iter=2",
            "rollout.group_size=4",
            "learner.world_size=3",
            "learner.minibatches=8",
        ],
    )


def test_eval_prompts_argument_is_checked(tmp_path, capsys):
    empty = tmp_path / "p.txt"
    empty.write_text("# nothing\n")
    assert main(["eval", "--checkpoint", "base", "--prompts", str(empty)]) == 2
    assert f"--prompts: {empty} holds no prompts" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", "base", "--prompts", str(tmp_path / "none.txt")]) == 2
    assert "no file" in capsys.readouterr().err


def test_eval_prompts_outside_a_scorers_grammar_name_the_line(tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("# held out\na red circle at the top left on a blue background\na photo of a cat\n")
    assert (
        main(["eval", "--checkpoint", "base", "--prompts", str(prompts)]) == 2
    )  # the tiny config scores alignment
    err = capsys.readouterr().err
    assert f"raygrpo: --prompts: {prompts}:3: 1 of 2 prompts are outside the alignment grammar" in err


def test_dashboard_of_a_dir_that_holds_no_run(tmp_path, capsys):
    assert main(["dashboard", "--run-dir", str(tmp_path)]) == 2
    assert f"raygrpo: --run-dir {tmp_path}: no status.json or metrics.jsonl there" in capsys.readouterr().err


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


def test_ocr_likelihood_on_images_that_need_detection_is_a_config_error(tmp_path):
    """ocr_likelihood reads a whole image as one line (reward/ocr.py): with a FLUX / SD3 model's
    scenes it is refused before any actor starts, unless the scorer says detect: false."""
    flux = tmp_path / "flux"
    flux.mkdir()
    (flux / "model_index.json").write_text('{"_class_name": "FluxPipeline"}')
    text = str(ROOT / "deploy/configs/tiny_text.yaml")
    likelihood = "reward.scorers=[{name: ll, kind: ocr_likelihood}]"
    with pytest.raises(ConfigError, match=r"scorers\[0\] \('ll'\) is kind ocr_likelihood.*1024-px scenes"):
        load_config(text, [f"model.path={flux}", likelihood])
    with pytest.raises(ConfigError, match=r"512-px scenes whose text needs detection; use kind ocr"):
        load_config(text, [f"model.path={flux}", "model.resolution=512", likelihood])
    one_line = "reward.scorers=[{name: ll, kind: ocr_likelihood, detect: false}]"
    load_config(text, [f"model.path={flux}", one_line])
    load_config(text, [f"model.path={flux}", "reward.scorers=[{name: ocr, kind: ocr}]"])  # detects
    load_config(text, [likelihood])  # the tiny text world: 32-px lines
