"""The driver loop, DESIGN.md §1: sample → rollout → score → advantages → update → sync → log.

The driver holds ObjectRefs and scalars only; each phase is one named, timed call, and a
new algorithm changes the plan and the config, never this loop.
"""

from __future__ import annotations

import time
from pathlib import Path

from orchestrator.cluster import Cluster
from orchestrator.config import Config, build_plan, prompt_path
from orchestrator.dashboard import start_dashboard
from orchestrator.evaluate import eval_batch
from orchestrator.faults import LearnerFailure
from orchestrator.pipeline import RolloutPipeline
from orchestrator.run import PhaseTimer, Run, compute_advantages
from rollout.tiny.world import read_prompts


def train(cfg: Config, run_dir: Path, resume: bool = False, cluster_cls=Cluster) -> dict:
    """Run `orchestrator.iterations` iterations (from the last checkpoint with `resume`).
    `cluster_cls=LocalCluster` runs the same phases in this process, without Ray."""
    run, plan = Run(cfg, run_dir, resume), build_plan(cfg)
    run.write_plan(plan)
    dashboard = start_dashboard(cfg.orchestrator, run.run_dir, run.status)  # read-only web page of the run dir
    cluster = None
    try:
        cluster = cluster_cls(cfg, plan, run.run_dir)
        rollouts = RolloutPipeline(cfg, run, cluster)  # async mode: the next iteration's rollouts run during this update
        run.status.update(state="starting", workers=cluster.workers())
        run.restore(cluster)
        before = evaluate(cfg, cluster, run, "before") if cfg.orchestrator.eval_before_after and not resume else None
        for iteration in range(run.start_iteration, cfg.orchestrator.iterations):
            timer = PhaseTimer(run.status)
            with timer("sample"):
                rollouts.start(iteration)
            with timer("rollout"):
                batches = rollouts.take(iteration)
            with timer("score"):
                rewards = cluster.score(batches)
            with timer("advantages"):
                adv = compute_advantages(cfg, rewards, batches)
            with timer("update"):
                stats = cluster.update(batches, adv.samples, adv.active, adv.values)
            with timer("sync"):
                run.version += 1
                checksum = cluster.sync(run.version)
            with timer("log"):
                run.log(iteration, rewards, adv, stats, timer, batches, checksum, cluster.health())
                if run.due(iteration):
                    run.checkpoint(cluster, iteration, checksum)
            del batches  # the iteration's images and trajectories leave the object store now, not during
            # the next rollout (which would hold two iterations' payloads at once: bench/sim_scale.py)
            cluster.rescale()  # `raygrpo scale` requests take effect between iterations
            run.update_workers(cluster.workers())
        after = evaluate(cfg, cluster, run, "after") if before is not None else None
        run.close("finished")
        return {"run_dir": str(run.run_dir), "before": before, "after": after, "last": run.last}
    except LearnerFailure as err:
        failure = err.with_resume_hint(run.run_dir)
        run.close("failed", error=str(failure))
        raise failure from err
    except BaseException:
        run.close("failed")
        raise
    finally:
        dashboard.stop()
        if cluster is not None:
            cluster.shutdown()


def evaluate(cfg: Config, cluster: Cluster, run: Run, tag: str) -> dict:
    """Held-out mean rewards of the current policy; writes samples/eval_<tag>.png."""
    start = time.perf_counter()
    run.status.update(phase=f"eval_{tag}")
    prompts = read_prompts(prompt_path(cfg.orchestrator.eval_prompts))
    batch, seeds = eval_batch(prompts, cfg.orchestrator.seed, cfg.orchestrator.eval_samples_per_prompt)
    means, preview = cluster.evaluate(batch, seeds, preview_cols=cfg.orchestrator.eval_samples_per_prompt)
    (run.run_dir / "samples" / f"eval_{tag}.png").write_bytes(preview)
    means["seconds"] = time.perf_counter() - start
    return means
