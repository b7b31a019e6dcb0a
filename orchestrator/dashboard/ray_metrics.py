"""Custom Ray metrics (`ray.util.metrics`), so that the Ray dashboard's metrics view and
any Prometheus that scrapes Ray show the run next to the cluster.

    ray_raygrpo_iteration{run}                    last completed iteration (0-based)
    ray_raygrpo_images_per_s{run}                 images per second of the last iteration's wall time
    ray_raygrpo_staleness{run}                    policy versions between rollout and trained weights
    ray_raygrpo_actor_images_per_s{run,role,index} each actor's busy throughput (worker table)

The driver emits them (Ray adds the `ray_` prefix on export); `run` is the run dir's name.
Where metrics cannot be recorded (no Ray, export disabled), the first failure is logged
and every later call does nothing: metrics never stop a run.
"""

from __future__ import annotations

import logging

from orchestrator import metrics as M

log = logging.getLogger(__name__)


class RayMetrics:
    def __init__(self, run: str):
        self.tags = {"run": run}
        self.enabled = True
        try:
            from ray.util.metrics import Gauge

            self.iteration = Gauge(
                "raygrpo_iteration", "last completed iteration (0-based)", tag_keys=("run",)
            )
            self.images_per_s = Gauge(
                "raygrpo_images_per_s", "images per second of iteration wall time", tag_keys=("run",)
            )
            self.staleness = Gauge(
                "raygrpo_staleness",
                "policy versions between rollout weights and trained weights",
                tag_keys=("run",),
            )
            self.actor_images_per_s = Gauge(
                "raygrpo_actor_images_per_s",
                "images an actor generated, scored or trained on per busy second",
                tag_keys=("run", "role", "index"),
            )
        except Exception as err:  # noqa: BLE001 - any failure only turns the metrics off
            self._disable(err)

    def record_iteration(self, row: dict) -> None:
        """Iteration, images/s and staleness from one metrics.jsonl row."""
        if not self.enabled:
            return
        try:
            self.iteration.set(row[M.ITERATION], tags=self.tags)
            self.images_per_s.set(row[M.IMAGES_PER_S], tags=self.tags)
            self.staleness.set(row.get(M.STALENESS, 0), tags=self.tags)
        except Exception as err:  # noqa: BLE001
            self._disable(err)

    def record_workers(self, rows: list[dict]) -> None:
        """Each actor's throughput from the worker table (status.json `workers`)."""
        if not self.enabled:
            return
        try:
            for row in rows:
                if row.get("images_per_s") is not None:
                    tags = {**self.tags, "role": row["role"], "index": str(row["index"])}
                    self.actor_images_per_s.set(row["images_per_s"], tags=tags)
        except Exception as err:  # noqa: BLE001
            self._disable(err)

    def _disable(self, err: Exception) -> None:
        self.enabled = False
        log.warning(
            "Ray metrics are off for this run (%s: %s); training goes on, and metrics.jsonl, "
            "TensorBoard and the dashboard still have every number",
            type(err).__name__,
            err,
        )
