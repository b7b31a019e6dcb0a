"""A run never fails silently: each fault is fed for real (tests/e2e/faulty.py) and must either
show in the run's own account or stop the run with a message naming the actor, the input and
the last good checkpoint, which stays intact. Rows of docs/bad-inputs.md point here."""

import json
import shutil

import pytest
import torch

from orchestrator import checkpoint
from orchestrator.__main__ import main
from orchestrator.cluster import Cluster, check_fits
from orchestrator.config import build_plan
from orchestrator.errors import ActorFailed, RunStopped, UserError
from orchestrator.guards import NonFinite, WeightsNotApplied, check_weights_changed, group_report
from tests.fixtures.stderr import driver_stderr
from orchestrator.local import LocalCluster
from orchestrator.loop import train
from orchestrator.metrics import read_metrics

from . import faulty
from .conftest import small_config

pytestmark = pytest.mark.slow


def local(rollout=None, reward=None):
    """LocalCluster with faulty actor classes."""
    return type(
        "FaultyLocal",
        (LocalCluster,),
        {"rollout_cls": rollout or LocalCluster.rollout_cls, "reward_cls": reward or LocalCluster.reward_cls},
    )


def stopped_after_one_iteration(run_dir, err, needle):
    """The run stopped in iteration 1: its message, status, traceback log, metrics, checkpoints."""
    message = str(err.value)
    assert needle in message
    assert (
        f"The last checkpoint is {run_dir / 'checkpoints' / 'iter_000001'}" in message
        and "--resume" in message
    )
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "failed" and needle in status["error"]
    assert "Traceback" in (run_dir / "error.log").read_text()
    assert [r["iteration"] for r in read_metrics(run_dir)] == [0]  # nothing logged for the bad iteration
    assert checkpoint.complete(run_dir) == [run_dir / "checkpoints" / "iter_000001"]  # nothing saved after it
    assert checkpoint.verify(run_dir / "checkpoints" / "iter_000001") == []
    weights = checkpoint.load_policy_weights(run_dir / "checkpoints" / "iter_000001")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_nan_reward_stops_the_run_before_the_update(tmp_path):
    cfg = small_config(orchestrator__checkpoint_every=1)
    with pytest.raises(NonFinite) as err:
        train(cfg, tmp_path / "run", cluster_cls=local(reward=faulty.NaNOnSecondCall))
    stopped_after_one_iteration(
        tmp_path / "run", err, "iteration 1: reward scorer 'preference' returned nan for 8 of 8 samples"
    )


def test_nan_loss_stops_the_run_before_sync_and_checkpoint(tmp_path, monkeypatch):
    import learner.worker

    objective, update, second = learner.worker.chunk_losses, learner.worker.LearnerWorker.update, []

    def overflowing_objective(*args, **kwargs):  # from the second update on, the chunk losses overflow
        losses, *rest = objective(*args, **kwargs)
        return (losses * float("nan"), *rest) if second else (losses, *rest)

    def counted_update(self, *args, **kwargs):
        if self.updates >= 1:
            second.append(True)
        return update(self, *args, **kwargs)

    monkeypatch.setattr(learner.worker, "chunk_losses", overflowing_objective)
    monkeypatch.setattr(learner.worker.LearnerWorker, "update", counted_update)
    with pytest.raises(NonFinite) as err:
        train(small_config(orchestrator__checkpoint_every=1), tmp_path / "run", cluster_cls=LocalCluster)
    stopped_after_one_iteration(
        tmp_path / "run", err, "iteration 1: the learner update went non-finite (loss nan"
    )


def test_nan_gradient_with_a_finite_loss_stops_the_run(tmp_path, monkeypatch):
    """From the second update on, a backward hook turns one parameter's gradient into NaN (an
    overflow in the backward only): the loss stays finite, the gradient norm does not."""
    import learner.worker

    update = learner.worker.LearnerWorker.update

    def poisoned_update(self, *args, **kwargs):
        if self.updates == 1:
            param = next(p for p in self.engine.module.parameters() if p.requires_grad)
            param.register_hook(lambda grad: torch.full_like(grad, float("nan")))
        return update(self, *args, **kwargs)

    monkeypatch.setattr(learner.worker.LearnerWorker, "update", poisoned_update)
    with pytest.raises(NonFinite) as err:
        train(small_config(orchestrator__checkpoint_every=1), tmp_path / "run", cluster_cls=LocalCluster)
    assert "loss nan" not in str(err.value)  # the loss was finite: the gradient check caught it
    stopped_after_one_iteration(tmp_path / "run", err, "iteration 1: the learner update went non-finite (")


def test_a_lora_sync_that_binds_no_adapter_is_an_alarm(flux_dir, tmp_path):
    """The rollout worker holds the learner's adapter weights (same checksum) but never runs
    them: the probe velocity does not change across the sync, and the run stops."""
    cfg = small_config(
        model__path=str(flux_dir),
        model__resolution=32,
        model__max_sequence_length=24,
        model__lora__rank=4,
        rollout__shift="resolution",
        orchestrator__iterations=1,
    )
    assert cfg.model.finetune in (None, "lora")
    with pytest.raises(
        WeightsNotApplied,
        match=r"weight sync v1: the learner's weights changed, but the output of "
        r"rollout worker\(s\) \[0\] on a fixed probe input did not",
    ):
        train(cfg, tmp_path / "run", cluster_cls=local(rollout=faulty.UnboundLoraRollout))
    assert json.loads((tmp_path / "run" / "status.json").read_text())["state"] == "failed"


def test_a_lost_group_shows_in_groups_completed(tmp_path):
    train(
        small_config(orchestrator__iterations=1),
        tmp_path / "run",
        cluster_cls=local(rollout=faulty.LosingRollout),
    )
    [row] = read_metrics(tmp_path / "run")
    assert row["groups_planned"] == 2 and row["groups_completed"] == 1
    assert row["samples/trained"] <= 4  # only the group that came back
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["warnings"] == [
        "iteration 0: 2 groups planned, 1 received: group(s) [1] never came back (not trained)"
    ]


def test_doubled_group_counts_and_a_reward_actor_error_stops_the_run(local_ray, tmp_path):
    """Through Ray: a rollout worker that returns a group twice (iteration 0: counted, not
    trained twice), then a reward worker whose server fails (iteration 1: the run stops with
    the actor's message; no reward is made up)."""
    faulty.register_by_value()

    class FaultyCluster(Cluster):
        rollout_cls, reward_cls = faulty.DoublingRollout, faulty.FailingOnSecondCall

    run_dir = tmp_path / "run"
    with pytest.raises(ActorFailed) as err:
        train(small_config(orchestrator__checkpoint_every=1), run_dir, cluster_cls=FaultyCluster)
    [row] = read_metrics(run_dir)
    assert row["groups_planned"] == 2 and row["groups_completed"] == 3
    assert row["samples/trained"] <= 8  # the copy of group 0 is never trained
    status = json.loads((run_dir / "status.json").read_text())
    assert "group(s) [0] came back more than once (only the first copy is trained)" in status["warnings"][0]
    # iteration 1's batch holds 3 groups of 4 again; either scorer may be the first to fail
    stopped_after_one_iteration(
        run_dir,
        err,
        "failed scoring the 12 images of rollout batch 0: "
        "ConnectionError: reward server at http://scorer:8000 answered 503",
    )
    assert str(err.value).startswith("reward worker '")


def test_an_actor_that_cannot_load_its_model_is_named(local_ray, random_tiny_dir, tmp_path, capsys):
    """The model dir passes every config check, but its weights are corrupt: only the actors
    can find out, and the run stops with one line naming the actor and the error."""
    model = tmp_path / "model"
    shutil.copytree(random_tiny_dir, model)
    (model / "transformer" / "diffusion_pytorch_model.safetensors").write_bytes(b"\x00" * 100)
    cfg = small_config(model__path=str(model))
    with pytest.raises(
        ActorFailed, match=r"(rollout worker 0|learner rank 0) could not start: \w+Error: .*"
    ) as err:
        Cluster(cfg, build_plan(cfg))
    assert f"It loads model.path {str(model)!r}: make sure those files are complete and readable" in str(
        err.value
    )
    import time

    from ray._private import state

    def alive():
        return [
            a
            for a in state.actors().values()
            if a["State"] != "DEAD"
            and a["ActorClassName"].rsplit(".", 1)[-1] in ("RolloutWorker", "RewardWorker", "LearnerWorker")
        ]

    deadline = time.monotonic() + 30
    while alive() and time.monotonic() < deadline:  # ray.kill is asynchronous
        time.sleep(0.5)
    assert not alive()  # a failed start leaves no actor behind


def test_actors_that_cannot_all_fit_the_cluster_are_refused_before_any_starts(local_ray):
    """Ray would leave an actor that does not fit waiting forever, without a word (seen: an OCR
    scorer asking for both CPUs of a 2-CPU machine, the learner's bundle holding 0.001)."""
    from ray._private import state

    before = len(state.actors())
    cfg = small_config(reward__scorers=[{"name": "preference", "kind": "preference", "num_cpus": 4}])
    with pytest.raises(UserError) as err:
        Cluster(cfg, build_plan(cfg))
    assert str(err.value).startswith("the run's actors reserve 4.001 CPU but the Ray cluster has 4: ")
    asks = "learner.world_size 1 × learner.num_cpus 0 (at least 0.001 a rank) (0.001), "
    assert asks + "reward.scorers 'preference' num_cpus 4 (4). An actor that does not fit" in str(err.value)
    assert len(state.actors()) == before  # refused before any actor was created
    fits = small_config(reward__scorers=[{"name": "preference", "kind": "preference", "num_cpus": 3.999}])
    check_fits(fits, {"CPU": 4})  # the same total less the learner's share: no error


def test_cli_prints_a_stopped_run_as_one_message(monkeypatch, capsys):
    import orchestrator.loop

    def stops(*args, **kwargs):
        raise NonFinite(
            "iteration 4: reward scorer 'hps' returned nan …\n"
            "The last checkpoint is runs/x/checkpoints/iter_000004."
        )

    monkeypatch.setattr(orchestrator.loop, "train", stops)
    assert (
        main(["train", "--no-ray", "--config", "deploy/configs/tiny.yaml", "--run-dir", "/nonexistent/run"])
        == 1
    )
    err = driver_stderr(capsys.readouterr().err)  # not an earlier test's actor lines that Ray forwards
    assert err.startswith("raygrpo: iteration 4: reward scorer 'hps' returned nan") and "Traceback" not in err


def test_weights_changed_check_and_group_report_by_hand():
    check_weights_changed({0: "a", 1: "b"}, {0: "c", 1: "d"}, learner_changed=True, version=3)  # both moved
    check_weights_changed({0: "a"}, {0: "a"}, learner_changed=False, version=3)  # nothing to move
    check_weights_changed(
        {0: "a", 1: "b"}, {0: "c"}, learner_changed=True, version=3
    )  # worker 1 replaced meanwhile
    with pytest.raises(WeightsNotApplied, match=r"rollout worker\(s\) \[1\]"):
        check_weights_changed({0: "a", 1: "b"}, {0: "c", 1: "b"}, learner_changed=True, version=3)
    assert group_report([0, 1, 2], [0, 1, 2]) is None
    assert group_report([0, 1, 2], [2, 0, 1, 0]) == (
        "3 groups planned, 4 received: group(s) [0] came back more than once (only the first copy is trained)"
    )
    assert issubclass(WeightsNotApplied, RunStopped)
