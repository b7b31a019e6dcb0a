"""Run bookkeeping for the driver loop: run dir, prompt order, advantages, metrics rows,
progress bar, sample previews, checkpoints and resume. Everything here is scalars and
small dicts; the heavy data stays in the object store."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from learner.advantages import iteration_advantages
from learner.schedule import minibatch_schedule
from orchestrator import checkpoint, guards, metrics as M, rundir
from orchestrator.config import Config, chunk_selector, dump_config, dump_sources, prompt_path
from orchestrator.dashboard.ray_metrics import RayMetrics
from rollout.sampler import derive_seed
from orchestrator.prompts import read_prompts


class PromptSampler:
    """Prompts in a seeded random order, a fresh permutation each epoch. State: (epoch, position)."""

    def __init__(self, prompts: list[str], seed: int, state: dict | None = None):
        self.prompts, self.seed = prompts, seed
        self.epoch, self.position = (state["epoch"], state["position"]) if state else (0, 0)

    def _order(self) -> list[int]:
        g = torch.Generator().manual_seed(derive_seed(self.seed, 7, self.epoch))
        return torch.randperm(len(self.prompts), generator=g).tolist()

    def next(self, n: int) -> list[str]:
        out = []
        while len(out) < n:
            order = self._order()
            chosen = order[self.position : self.position + n - len(out)]
            out += [self.prompts[i] for i in chosen]
            self.position += len(chosen)
            if self.position >= len(order):
                self.epoch, self.position = self.epoch + 1, 0
        return out

    def state(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}


@dataclass(frozen=True)
class Advantages:
    samples: list[int]  # global sample indices the learner trains on
    values: list  # advantage per entry of `samples`: a float, or one per chunk
    minibatches: list[list[int]]  # the optimizer steps: positions into `samples` (learner/schedule.py)
    zero_std_ratio: float
    abs_mean: float


def compute_advantages(
    cfg: Config, rewards: dict[str, np.ndarray], batches: list, iteration: int = 0
) -> Advantages:
    """The iteration's advantages (learner/advantages.py `iteration_advantages`, on the batches'
    per-sample arrays; a second copy of a group a worker returned twice is never trained:
    guards.first_copies) and its minibatch schedule, seeded by run seed and iteration (so a
    resumed run draws the same)."""
    lc = cfg.learner
    groups = [g for b in batches for g in b.groups]
    columns = [c for b in batches for c in b.columns]
    adv = iteration_advantages(
        rewards,
        groups,
        columns,
        guards.first_copies(batches),
        by=lc.advantage_groups,
        weights={s.name: s.weight for s in cfg.reward.scorers},
        chunk_weights=cfg.reward.chunk_weights,
        aggregation=cfg.reward.aggregation,
        clip=lc.adv_clip,
        std=lc.advantage_std,
        best_of=lc.best_of,
    )
    first_column = {}  # prompt group -> its first column label: column index = label − first
    for g, c in zip(groups, columns):
        first_column[g] = min(first_column.get(g, c), c)
    minibatches = minibatch_schedule(
        [groups[i] for i in adv.samples],
        minibatches=lc.minibatches,
        order=lc.minibatch_order,
        seed=derive_seed(cfg.orchestrator.seed, 13, iteration),
        columns=[columns[i] - first_column[groups[i]] for i in adv.samples],
        epochs=lc.epochs,
    )
    return Advantages(
        samples=adv.samples,
        values=adv.values,
        minibatches=minibatches,
        zero_std_ratio=adv.zero_std_ratio,
        abs_mean=adv.abs_mean,
    )


def trajectory_layout(cfg: Config, plan) -> list[int] | None:
    """The chunk sizes every trajectory gets over its trainable steps at iteration 0; None where
    they are each trajectory's own (adaptive) or there are no chunks (E-GRPO windows)."""
    if plan.windows or cfg.learner.chunks.mode == "adaptive":
        return None
    n = plan.at(0).trainable.count(True)
    return chunk_selector(cfg.learner).layouts(torch.zeros(1, n))[0]


class PhaseTimer:
    """`with timer("rollout"):` records seconds per phase and the live phase in status.json."""

    def __init__(self, status: M.Status):
        self.status, self.seconds, self._phase = status, {}, None

    def __call__(self, phase: str):
        self._phase = phase
        return self

    def __enter__(self):
        self.status.update(phase=self._phase)
        self._start = time.perf_counter()

    def __exit__(self, *exc):
        self.seconds[self._phase] = time.perf_counter() - self._start


class Run:
    def __init__(self, cfg: Config, run_dir: Path, resume: bool, allow_config_changes: bool = False):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        # a used run dir without --resume, or a resume that changes the run, is refused before
        # anything is written
        self.resume_from = rundir.prepare(cfg, self.run_dir, resume, allow_config_changes)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "samples").mkdir(exist_ok=True)
        (self.run_dir / "config.yaml").write_text(dump_config(cfg))
        if cfg.sources:  # where each value came from: preset (with its source), file, command line, default
            (self.run_dir / "config_sources.yaml").write_text(dump_sources(cfg))
        (self.run_dir / "error.log").unlink(missing_ok=True)
        state = checkpoint.read_state(self.resume_from) if self.resume_from else None
        self.start_iteration = state["next_iteration"] if state else 0
        self.version = state["policy_version"] if state else 0
        self.prompts = PromptSampler(
            read_prompts(prompt_path(cfg.orchestrator.train_prompts)),
            cfg.orchestrator.seed,
            state["prompt_sampler"] if state else None,
        )
        if state:  # iterations logged after the checkpoint are redone: drop their lines
            M.truncate_metrics(self.run_dir, self.start_iteration)
        self.metrics = M.MetricsWriter(self.run_dir)
        self.status = M.Status(self.run_dir, cfg.orchestrator.iterations)
        self.ray_metrics = RayMetrics(self.run_dir.name)
        self.started = time.time()
        self.bar = tqdm(
            total=cfg.orchestrator.iterations,
            initial=self.start_iteration,
            desc="raygrpo",
            unit="it",
            dynamic_ncols=True,
        )
        self.last: dict = {}
        self.plan = None
        self.warnings: list[str] = []

    def warn(self, message: str) -> None:
        """A problem the run survives: a warning on stderr, and in status.json `warnings` (the last 20)."""
        checkpoint.warn_once(message)
        self.warnings.append(message)
        self.status.update(warnings=self.warnings[-20:])

    def write_plan(self, plan) -> None:
        """plan.json: the grid, SDE and trainable transitions, E(k, k+1) per step, E-GRPO's
        windows (with their E), MixGRPO's window per iteration, and how each trajectory's
        trainable transitions become chunks and which it trains (learner.chunks,
        timestep_fraction: the rule the rollout workers apply per trajectory)."""
        self.plan = plan
        c, lc = self.cfg.learner.chunks, self.cfg.learner
        data = plan.describe(self.cfg.orchestrator.iterations)
        data["algorithm"] = self.cfg.algorithm
        data["chunks"] = {
            "mode": c.mode,
            "sizes": c.sizes,
            "size": c.size,
            "stop_size": c.stop_size,
            "weighting": c.weighting,
            "fraction": lc.timestep_fraction,
            "layout": trajectory_layout(self.cfg, plan),
        }
        data["update"] = {"minibatches": lc.minibatches, "order": lc.minibatch_order, "epochs": lc.epochs}
        M.write_json_atomic(self.run_dir / "plan.json", data)

    def restore(self, cluster, rollouts) -> None:
        """On resume: the checkpoint into the learner, its weights into the rollout actors."""
        if self.resume_from is not None:
            cluster.load(str(self.resume_from))
            rollouts.sync(self.version)

    def log(
        self,
        iteration: int,
        rewards: dict,
        adv: Advantages,
        stats: dict,
        timer: PhaseTimer,
        batches: list,
        checksum: str,
        health: dict | None = None,
        extra: dict | None = None,
    ) -> dict:
        wall = sum(timer.seconds.values())
        health = health or {}
        n = sum(len(b.prompts) for b in batches)
        row = {
            M.ITERATION: iteration,
            M.POLICY_VERSION: self.version,
            M.WEIGHTS_CHECKSUM: checksum,
            M.ELAPSED: time.time() - self.started,
            M.IMAGES_PER_S: n / max(wall, 1e-9),
            M.GROUPS_PLANNED: self.cfg.orchestrator.prompts_per_iter,
            M.GROUPS_COMPLETED: len(guards.received_groups(batches)),  # as reported by the workers, scored
            M.ZERO_STD_RATIO: adv.zero_std_ratio,
            M.ADVANTAGE_ABS: adv.abs_mean,
            M.TRAINED_SAMPLES: len(adv.samples),
            M.LOSS: stats["loss"],
            M.CLIP_FRACTION: stats["clip_fraction"],
            M.APPROX_KL: stats["approx_kl"],
            M.RATIO_MEAN: stats["ratio_mean"],
            M.RATIO_MIN: stats["ratio_min"],
            M.RATIO_MAX: stats["ratio_max"],
            M.RATIO_MEAN_FIRST: stats["ratio_mean_first"],
            M.RATIO_DEV_LATER: stats["ratio_dev_later"],
            M.GRAD_NORM: stats["grad_norm"],
            M.KL: stats.get("kl", 0.0),
            M.OPTIMIZER_STEPS: stats["optimizer_steps"],
            M.NONFINITE: stats["nonfinite"],
        }
        # the learner updated version self.version - 1 on samples of the versions that generated them
        row.update(
            {
                M.STALENESS: self.version - 1 - min(b.info["policy_version"] for b in batches),
                M.RECOVERED_FAILURES: health.get("recovered_failures", 0),
                M.ROLLOUT_WORKERS: health.get("rollout_workers", len(batches)),
            }
        )
        for name, r in rewards.items():
            row[M.reward_mean(name)], row[M.reward_std(name)] = float(np.mean(r)), float(np.std(r))
        row.update({M.phase_time(p): s for p, s in timer.seconds.items()})
        row.update(extra or {})  # the held-out evaluation's metrics, on the iterations that ran one
        self.metrics.write(row)
        self.write_preview(iteration, batches[0], rewards)
        self.ray_metrics.record_iteration(row)
        first = self.cfg.reward.scorers[0].name
        self.bar.set_postfix(
            {f"{first}": f"{row[M.reward_mean(first)]:.3f}", "img/s": f"{row[M.IMAGES_PER_S]:.1f}"}
        )
        self.bar.update(1)
        self.status.update(state="running", iteration=iteration, last_metrics=row)
        self.last = row
        return row

    def warn_hacking(self, message: str) -> None:
        """The reward-hacking monitor's warning: a CLI line above the progress bar, status.json
        `hacking_warning` (the dashboard's banner, kept until the run ends) and `warnings`."""
        self.bar.write(f"raygrpo: WARNING: {message}")
        self.warnings.append(message)
        self.status.update(hacking_warning=message, warnings=self.warnings[-20:])

    def write_preview(self, iteration: int, batch, rewards: dict[str, np.ndarray]) -> None:
        """samples/iter_XXXXX.png (the first rollout worker's grid) and, next to it,
        iter_XXXXX.json: what each grid row is (a prompt group, or under E-GRPO one branch column
        of a group: its prompt and branch step) and every sample's reward per scorer. The grid's
        `preview_rows` rows of G are the first rows · G entries of `rewards` (batch order)."""
        png = batch.info.get("preview_png")
        if not png:
            return
        g = self.cfg.rollout.group_size
        windows = self.plan.windows if self.plan is not None else ()
        members = g * max(1, len(windows))
        rows = []
        for r in range(batch.info.get("preview_rows", len(batch.prompts) // g)):
            lo, hi = r * g, (r + 1) * g  # the row's samples, in batch order
            row = {
                "prompt": batch.prompts[lo],
                "group": batch.groups[lo],
                "label": batch.prompts[lo],
                "rewards": {name: [float(x) for x in values[lo:hi]] for name, values in rewards.items()},
            }
            if windows:  # E-GRPO: a row is one window column of G members
                start, end = windows[(lo % members) // g]
                row.update(window=[start, end], label=f"{batch.prompts[lo]} · SDE window {start}–{end}")
            rows.append(row)
        meta = {
            "iteration": iteration,
            "policy_version": batch.info.get("policy_version"),
            "group_size": g,
            "row_kind": "window column" if windows else "prompt group",
            "rows": rows,
        }
        stem = self.run_dir / "samples" / f"iter_{iteration:05d}"
        M.write_json_atomic(stem.with_suffix(".json"), meta)  # first: a listed grid always has its rewards
        tmp = stem.with_name(f".{stem.name}.png.tmp")
        tmp.write_bytes(png)
        os.replace(tmp, stem.with_suffix(".png"))

    def update_workers(self, rows: list[dict]) -> None:
        """The worker table: into status.json and the Ray metrics view."""
        self.status.update(workers=rows)
        self.ray_metrics.record_workers(rows)

    def checkpoint(self, cluster, iteration: int, checksum: str) -> Path:
        tmp = checkpoint.begin(self.run_dir, iteration + 1)
        cluster.save(str(tmp))
        state = {
            "next_iteration": iteration + 1,
            "policy_version": self.version,
            "weights_checksum": checksum,
            "prompt_sampler": self.prompts.state(),
            "seed": self.cfg.orchestrator.seed,
        }
        return checkpoint.commit(tmp, state, dump_config(self.cfg))

    def due(self, iteration: int) -> bool:
        last = iteration + 1 == self.cfg.orchestrator.iterations
        return last or (iteration + 1) % self.cfg.orchestrator.checkpoint_every == 0

    def record_error(self, err: BaseException) -> Path:
        """RUN_DIR/error.log: the full traceback behind a failure (the CLI prints one line)."""
        import traceback

        path = self.run_dir / "error.log"
        path.write_text("".join(traceback.format_exception(err)))
        return path

    def close(self, state: str = "finished", error: str | None = None) -> None:
        self.bar.close()
        self.metrics.close()
        self.status.update(state=state, phase=None, **({"error": error} if error else {}))
