"""Run dirs that never mix, and checkpoints verified on load: a used run dir, a resume that
changes the config, a corrupt orchestrator.json / policy.safetensors, and the newest
checkpoint's files killed, after which --resume continues from the one before it, exactly.
The runs go through the single-process LocalCluster: the actor system is not the point here
(real DeepSpeed state is saved and loaded all the same)."""

import json
import logging
import shutil

import pytest
import torch

from orchestrator import checkpoint
from orchestrator.__main__ import main
from orchestrator.errors import UserError
from orchestrator.local import LocalCluster
from orchestrator.loop import train
from orchestrator.metrics import read_metrics
from orchestrator.rundir import default_run_dir, prepare, resolve_checkpoint
from tests.fixtures.stderr import driver_stderr

from .conftest import small_config

pytestmark = pytest.mark.slow
VOLATILE = ("time/", "elapsed_s", "throughput/")


def stable(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith(VOLATILE)}


def config(**extra):
    return small_config(
        **{
            "orchestrator__iterations": 3,
            "orchestrator__checkpoint_every": 1,
            "orchestrator__dashboard": "false",
            **extra,
        }
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """3 iterations, a checkpoint after each (iter_000001 … iter_000003)."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    train(config(), run_dir, cluster_cls=LocalCluster)
    return run_dir


def copy_of(run_dir, tmp_path):
    dest = tmp_path / "run"
    shutil.copytree(run_dir, dest)
    return dest


def test_newest_checkpoint_killed_resume_continues_from_the_previous_one_exactly(finished, tmp_path, caplog):
    run_dir = copy_of(finished, tmp_path)
    newest = run_dir / "checkpoints" / "iter_000003"
    assert checkpoint.latest(run_dir) == newest and (newest / "manifest.json").is_file()
    weights = {
        k: v.clone() for k, v in checkpoint.load_policy_weights(newest).items()
    }  # not the mmap we truncate
    for f in (newest / "deepspeed" / "state").glob("*optim_states.pt"):  # the optimizer state: gone
        f.unlink()
    (newest / "policy.safetensors").write_bytes(
        (newest / "policy.safetensors").read_bytes()[:1000]
    )  # truncated
    assert checkpoint.latest(run_dir) == run_dir / "checkpoints" / "iter_000002"

    with caplog.at_level(logging.WARNING, logger="raygrpo"):
        train(config(), run_dir, resume=True, cluster_cls=LocalCluster)
    assert f"checkpoint {newest} is broken" in caplog.text and "falling back to iter_000002" in caplog.text
    assert "optim_states.pt is missing" in caplog.text
    # iteration 2 ran again from iter_000002: the same numbers, the same final weights
    before, after = read_metrics(finished), read_metrics(run_dir)
    assert [r["iteration"] for r in after] == [0, 1, 2]
    assert [stable(r) for r in after] == [stable(r) for r in before]
    again = checkpoint.load_policy_weights(newest)
    assert checkpoint.verify(newest) == [] and all(torch.equal(weights[k], again[k]) for k in weights)


def test_corrupt_checkpoint_files_are_named(finished, tmp_path):
    run_dir = copy_of(finished, tmp_path)
    ckpts = run_dir / "checkpoints"
    (ckpts / "iter_000003" / "orchestrator.json").write_text('{"next_iteration": 3, ')
    (ckpts / "iter_000002" / "policy.safetensors").write_bytes(b"\x00" * 64)
    problems = checkpoint.verify(ckpts / "iter_000003")
    assert any(p.startswith("orchestrator.json does not parse") for p in problems)
    assert any("orchestrator.json has" in p and "bytes" in p for p in problems)  # against the manifest
    assert any(
        p.startswith("policy.safetensors does not open") for p in checkpoint.verify(ckpts / "iter_000002")
    )
    assert checkpoint.latest(run_dir) == ckpts / "iter_000001"
    with pytest.raises(UserError, match=r"--checkpoint .*iter_000003 is broken: orchestrator.json"):
        resolve_checkpoint(str(ckpts / "iter_000003"))
    # a run dir, its checkpoints dir or checkpoints/latest (which names the broken iter_000003):
    # the newest that verifies
    assert [resolve_checkpoint(str(p)) for p in (run_dir, ckpts, ckpts / "latest")] == [
        ckpts / "iter_000001"
    ] * 3


def test_eval_takes_a_run_dir_or_checkpoints_latest(finished, tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle at the top left on a blue background\n")
    out = {}
    for i, arg in enumerate(
        [finished, finished / "checkpoints" / "latest", finished / "checkpoints" / "iter_000003"]
    ):
        path = tmp_path / f"{i}.json"
        assert (
            main(
                [
                    "eval",
                    "--checkpoint",
                    str(arg),
                    "--prompts",
                    str(prompts),
                    "--samples-per-prompt",
                    "1",
                    "--json",
                    str(path),
                ]
            )
            == 0
        )
        out[i] = json.loads(path.read_text())
    assert out[0] == out[1] == out[2] and set(out[0]) == {"preference", "alignment"}
    assert main(["eval", "--checkpoint", str(tmp_path), "--prompts", str(prompts)]) == 2
    assert "not a checkpoint" in capsys.readouterr().err


def test_a_used_run_dir_is_refused_without_resume(finished, tmp_path, monkeypatch, capsys):
    import orchestrator.__main__ as cli

    before = {name: (finished / name).read_text() for name in ("metrics.jsonl", "config.yaml", "status.json")}
    with pytest.raises(
        UserError,
        match=r"already holds a run \(3 metrics lines, checkpoints up to iter_000003\); "
        r"continue it with --resume",
    ):
        train(config(), finished, cluster_cls=LocalCluster)
    started = []
    monkeypatch.setattr(cli, "connect_ray", lambda *a, **k: started.append("ray"))
    assert main(["train", "--config", "deploy/configs/tiny.yaml", "--run-dir", str(finished)]) == 2
    assert driver_stderr(capsys.readouterr().err).startswith(
        f"raygrpo: --run-dir {finished} already holds a run"
    )
    # the CLI, with the run's own config and one change: refused before Ray, the change listed
    assert (
        main(
            [
                "train",
                "--config",
                str(finished / "config.yaml"),
                "--run-dir",
                str(finished),
                "--resume",
                "learner.clip_range=0.001",
            ]
        )
        == 2
    )
    # the run's clip_range is chunk_grpo's preset value, 5e-5 (GCPO finetune_hpsv3_chunk.sh:39)
    assert (
        "learner.clip_range: 5e-05 (checkpoint) -> 0.001 (now)" in capsys.readouterr().err and started == []
    )
    # nothing appended, nothing overwritten
    assert {name: (finished / name).read_text() for name in before} == before
    (tmp_path / "runs").mkdir()
    first = default_run_dir("chunk_grpo")
    first.mkdir(parents=True)
    try:
        assert default_run_dir("chunk_grpo").name in (f"{first.name}-2", first.name)  # the same second: -2
    finally:
        shutil.rmtree(first)


def test_resume_lists_config_changes_and_refuses_them_without_the_flag(finished, caplog):
    with pytest.raises(UserError) as err:
        prepare(config(learner__lr=3e-4, rollout__noise_level=0.5), finished, resume=True)
    message = str(err.value)
    assert "learner.lr: 0.0001 (checkpoint) -> 0.0003 (now)" in message
    assert "rollout.noise_level: 0.7 (checkpoint) -> 0.5 (now)" in message
    assert "--allow-config-changes" in message
    with caplog.at_level(logging.WARNING, logger="raygrpo"):
        assert (
            prepare(config(learner__lr=3e-4), finished, resume=True, allow_config_changes=True).name
            == "iter_000003"
        )
        # operational fields (more iterations, other worker counts) change freely, with a note
        assert prepare(config(orchestrator__iterations=5, rollout__num_workers=2), finished, resume=True)
    assert "--resume changes orchestrator.iterations: 3 -> 5" in caplog.text
