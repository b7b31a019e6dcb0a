"""How every compute actor runs and reports, shared by `Cluster` (reward, learner), `Rollouts`
(rollout) and `LocalCluster`: its runtime_env, and its row of the worker table."""

from __future__ import annotations

import ray

from orchestrator.faults import WORKER_DIED


def actor_env(niceness: int, **extra: str) -> dict:
    """runtime_env of a compute actor. Ray starts worker processes at nice 15, so on a CPU
    node any busy nice-0 process (raylet, GCS, a driver) preempts one of an actor's OpenMP
    threads and stalls the whole parallel region (measured: a 512² matmul loop 3-4x slower
    than in the driver on 2 loaded cores); the rollout, reward and learner actors *are* the
    workload, so they run at `orchestrator.worker_niceness` (0, as Ray's own job supervisor
    does). Env vars merge with the job's runtime_env."""
    return {"env_vars": {"RAY_worker_niceness": str(niceness), "PYTHONUNBUFFERED": "1", **extra}}


def learner_env(num_gpus: float) -> dict:
    return {} if num_gpus > 0 else {"DS_ACCELERATOR": "cpu"}


def worker_row(role: str, index: int, info: dict, restarts: int = 0) -> dict:
    """One row of the worker table (status.json `workers`, the dashboard): the actor's own
    info() plus its busy throughput (images it generated, scored or trained on, per second
    spent working) and `restarts`: how many times this slot's actor died and was replaced."""
    seconds = info.get("seconds") or 0.0
    throughput = info.get("images", 0) / seconds if seconds > 0 else None
    return {
        "role": role,
        "index": index,
        "state": "alive",
        "restarts": restarts,
        **info,
        "images_per_s": throughput,
    }


def actor_rows(role: str, actors: list, restarts: list[int]) -> list[dict]:
    """The worker-table rows of Ray actors of one role; a dead one's row says so."""
    rows = []
    for i, ref in enumerate([a.info.remote() for a in actors]):
        try:
            rows.append(worker_row(role, i, ray.get(ref), restarts[i]))
        except WORKER_DIED:
            rows.append({"role": role, "index": i, "state": "dead", "restarts": restarts[i]})
    return rows
