"""The driver loop, DESIGN.md §1: sample → rollout → score → advantages → update → sync → log.

The driver holds ObjectRefs and scalars only; each phase is one named, timed call, and a
new algorithm changes the plan and the config, never this loop.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from orchestrator.cluster import Cluster
from orchestrator.config import Config, build_plan, prompt_path
from orchestrator.dashboard import start_dashboard
from orchestrator.errors import RunStopped
from orchestrator.evaluate import eval_batch
from orchestrator.guards import (
    check_advantages,
    check_rewards,
    check_update,
    check_weights_changed,
    group_report,
    received_groups,
)
from orchestrator.inputs import preflight
from orchestrator.metrics import write_json_atomic
from orchestrator.monitor import HackingMonitor, Verdict
from orchestrator.rollouts import Rollouts
from orchestrator.run import PhaseTimer, Run, compute_advantages
from orchestrator.prompts import read_prompts


def train(
    cfg: Config, run_dir: Path, resume: bool = False, cluster_cls=Cluster, allow_config_changes: bool = False
) -> dict:
    """Run `orchestrator.iterations` iterations (from the last checkpoint with `resume`).
    `cluster_cls=LocalCluster` runs the same phases in this process, without Ray. Every check
    that can run before an actor starts does (orchestrator/inputs.py, rundir.py); the checks in
    the loop (orchestrator/guards.py) stop the run before a bad update is synced or saved."""
    preflight(cfg)
    run, plan = Run(cfg, run_dir, resume, allow_config_changes), build_plan(cfg)
    run.write_plan(plan)
    # the dashboard: a read-only web page of the run dir
    dashboard = start_dashboard(cfg.orchestrator, run.run_dir, run.status)
    cluster = None
    try:
        cluster = cluster_cls(cfg, plan, run.run_dir)  # reward, learner and control actors
        rollouts = cluster.rollouts  # the rollout actors: sync / async rollouts, their weights, scaling
        run.status.update(state="starting", workers=worker_table(rollouts, cluster))
        run.restore(cluster, rollouts)
        before_after = cfg.orchestrator.eval_before_after and not resume
        before = evaluate(cfg, rollouts, cluster, run, "before") if before_after else None
        checksum = rollouts.checksum
        monitor = start_monitor(cfg, rollouts, cluster, run, before)
        for iteration in range(run.start_iteration, cfg.orchestrator.iterations):
            timer = PhaseTimer(run.status)
            with timer("sample"):  # async: the next iteration's rollouts start too (run during this update)
                rollouts.start(iteration, run.prompts, checkpoint=run.due(iteration))
            with timer("rollout"):
                batches = rollouts.take(iteration)
                account(run, batches, iteration)
            with timer("score"):
                rewards = cluster.score(batches)
                check_rewards(rewards, [p for b in batches for p in b.prompts], iteration)
            with timer("advantages"):
                adv = compute_advantages(cfg, rewards, batches, iteration)
                check_advantages(adv.values, iteration)
            with timer("update"):
                stats = cluster.update(batches, adv.samples, adv.values, adv.minibatches)
                check_update(stats, iteration)
            with timer("sync"):
                checksum = sync(rollouts, run, previous=checksum)
            verdict = heldout_check(cfg, rollouts, cluster, run, monitor, iteration, timer)  # when due
            with timer("log"):
                state = health(rollouts, cluster)
                run.log(iteration, rewards, adv, stats, timer, batches, checksum, state, extra=verdict.row)
                if run.due(iteration) or verdict.stop:
                    run.checkpoint(cluster, iteration, checksum)
            if verdict.stop:
                break
            # the payloads leave the object store now, not during the next rollout (bench/sim_scale.py)
            del batches
            rollouts.rescale()  # `raygrpo scale` requests take effect between iterations
            run.update_workers(worker_table(rollouts, cluster))
        after = evaluate(cfg, rollouts, cluster, run, "after") if before is not None else None
        run.close("finished")
        return {"run_dir": str(run.run_dir), "before": before, "after": after, "last": run.last}
    except RunStopped as err:  # worded for the user; the traceback goes to RUN_DIR/error.log
        stopped = err.with_resume_hint(run.run_dir)
        run.record_error(err)
        run.close("failed", error=str(stopped))
        raise stopped from err
    except BaseException as err:
        run.record_error(err)
        run.close("failed", error=f"{type(err).__name__}: {err}")
        raise
    finally:
        dashboard.stop()
        if cluster is not None:
            cluster.shutdown()


def sync(rollouts: Rollouts, run: Run, previous: str) -> str:
    """Weights of the next version into every rollout actor; if the learner's weights changed,
    each actor's output on a fixed probe input must change too (guards.check_weights_changed)."""
    prompt = run.prompts.prompts[0]
    before = rollouts.probe(prompt)
    run.version += 1
    checksum = rollouts.sync(run.version)
    check_weights_changed(
        before, rollouts.probe(prompt), learner_changed=checksum != previous, version=run.version
    )
    return checksum


def health(rollouts: Rollouts, cluster: Cluster) -> dict:
    """For the metrics line: how many rollout actors, and the actors (rollout and reward)
    replaced since the last line."""
    out = rollouts.health()
    out["recovered_failures"] += cluster.health()["recovered_failures"]
    return out


def worker_table(rollouts: Rollouts, cluster: Cluster) -> list[dict]:
    """The worker table (status.json `workers`, the dashboard): rollout, reward, judge, learner rows."""
    return rollouts.worker_rows() + cluster.worker_rows()


def account(run: Run, batches: list, iteration: int) -> None:
    """Warn when the groups the workers returned are not the groups planned (they are counted
    as received in `groups_completed`; a second copy is not trained)."""
    problem = group_report(list(range(run.cfg.orchestrator.prompts_per_iter)), received_groups(batches))
    if problem:
        run.warn(f"iteration {iteration}: {problem}")


def evaluate(cfg: Config, rollouts: Rollouts, cluster: Cluster, run: Run, tag: str | None) -> dict:
    """Held-out mean rewards (trained scorers and held-out judges) of the current policy's ODE
    samples; writes samples/eval_<tag>.png when tagged (before / after)."""
    start = time.perf_counter()
    if tag is not None:
        run.status.update(phase=f"eval_{tag}")
    prompts = read_prompts(prompt_path(cfg.orchestrator.eval_prompts))
    batch, seeds = eval_batch(prompts, cfg.orchestrator.seed, cfg.orchestrator.eval_samples_per_prompt)
    batches, preview = rollouts.sample_ode(batch, seeds, cfg.orchestrator.eval_samples_per_prompt)
    means = {name: float(np.mean(r)) for name, r in cluster.score(batches, judges=True).items()}
    if tag is not None:
        (run.run_dir / "samples" / f"eval_{tag}.png").write_bytes(preview)
    means["seconds"] = time.perf_counter() - start
    return means


def heldout_check(
    cfg: Config,
    rollouts: Rollouts,
    cluster: Cluster,
    run: Run,
    monitor: HackingMonitor,
    iteration: int,
    timer: PhaseTimer,
) -> Verdict:
    """The monitor's held-out evaluation when due (timed as phase `heldout`); a warning goes
    to the CLI and status.json, and with orchestrator.hacking_stop the verdict says stop."""
    if not monitor.due(iteration):
        return Verdict({})
    with timer("heldout"):
        verdict = monitor.check(iteration, evaluate(cfg, rollouts, cluster, run, None))
    if verdict.warning:
        run.warn_hacking(verdict.warning)
    if verdict.stop:
        run.status.update(
            stopped_early=f"reward hacking suspected at iteration {iteration} (orchestrator.hacking_stop)"
        )
    return verdict


def start_monitor(
    cfg: Config, rollouts: Rollouts, cluster: Cluster, run: Run, before: dict | None
) -> HackingMonitor:
    """The reward-hacking monitor with its baseline: the "before" evaluation, or (on resume, or
    without before/after evaluation) a fresh evaluation of the policy the run starts from."""
    monitor = HackingMonitor(cfg)
    if not monitor.enabled:
        return monitor
    saved = run.run_dir / "heldout_baseline.json"
    if before is None and saved.exists():  # a resumed run keeps the baseline of its start
        monitor.baseline(json.loads(saved.read_text()))
    else:
        monitor.baseline(before if before is not None else evaluate(cfg, rollouts, cluster, run, None))
        write_json_atomic(saved, monitor.base)
    return monitor
