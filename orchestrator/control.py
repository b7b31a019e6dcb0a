"""Live control of a running job: `raygrpo scale --workers N`.

Each training job owns one small named actor (`ScaleControl`, made remote in cluster.py) in
the Ray namespace `raygrpo`, named after its run dir. `raygrpo scale` connects to the
cluster, finds it, and records a request; between iterations the driver pops the request,
resizes its rollout actors (orchestrator/rollouts.py: new ones get the current weights, groups
are re-split from the next iteration on) and reports back, which `--wait` waits for. Reward
and learner sizes are not affected.
"""

from __future__ import annotations

import time
from pathlib import Path

from orchestrator.errors import UserError

CONTROL_NAMESPACE = "raygrpo"
CONTROL_PREFIX = "control:"


def control_name(run_dir: Path) -> str:
    return CONTROL_PREFIX + str(Path(run_dir).resolve())


class ScaleControl:
    """Requests from `raygrpo scale`, popped by the driver between iterations."""

    def __init__(self, rollout_workers: int):
        self.rollout_workers = rollout_workers  # the count the driver last reported
        self.pending: dict | None = None
        self.requests = 0  # ids of requests made
        self.applied_id = 0  # id of the last request the driver applied

    def request(self, rollout_workers: int) -> dict:
        if rollout_workers < 1:
            raise ValueError(f"--workers {rollout_workers}: a run needs at least 1 rollout worker")
        self.requests += 1
        self.pending = {"rollout_workers": rollout_workers, "id": self.requests}
        return self.state() | {"id": self.requests}

    def pop_request(self) -> dict | None:
        request, self.pending = self.pending, None
        return request

    def applied(self, rollout_workers: int, request_id: int) -> None:
        self.rollout_workers, self.applied_id = rollout_workers, request_id

    def state(self) -> dict:
        return {
            "rollout_workers": self.rollout_workers,
            "pending": self.pending,
            "applied_id": self.applied_id,
        }


def find_control(run: str | None):
    """The control actor of the one running job, or of the job whose run dir ends in `run`."""
    import ray

    names = [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["namespace"] == CONTROL_NAMESPACE and a["name"].startswith(CONTROL_PREFIX)
    ]
    if run is not None:
        names = [n for n in names if n == control_name(Path(run)) or n.endswith("/" + run.strip("/"))]
    runs = [n.removeprefix(CONTROL_PREFIX) for n in names]
    if not names:
        where = f"whose run dir ends in {run!r} " if run else ""
        raise UserError(
            f"no running raygrpo job {where}on this cluster; start one with `raygrpo train` "
            "(or check --address)"
        )
    if len(names) > 1:
        raise UserError(f"{len(names)} raygrpo jobs run on this cluster: {runs}; pick one with --run RUN_DIR")
    return ray.get_actor(names[0], namespace=CONTROL_NAMESPACE), runs[0]


def request_scale(workers: int, run: str | None = None, wait_s: float = 0) -> str:
    """Ask the running job for `workers` rollout workers; with wait_s > 0, wait until it has them."""
    import ray

    actor, run_dir = find_control(run)
    state = ray.get(actor.request.remote(workers))
    if wait_s <= 0:
        return (
            f"{run_dir}: asked for {workers} rollout workers (now {state['rollout_workers']}); "
            "it takes effect between iterations"
        )
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        now = ray.get(actor.state.remote())
        if now["applied_id"] >= state["id"]:
            return f"{run_dir}: {now['rollout_workers']} rollout workers"
        time.sleep(0.5)
    raise UserError(
        f"{run_dir}: the job did not apply the request within {wait_s:.0f} s "
        "(an iteration may be long; it still applies it between iterations)"
    )
