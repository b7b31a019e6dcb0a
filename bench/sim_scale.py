"""The orchestration at 1…64+ rollout workers, by simulation (issue 17).

    python bench/sim_scale.py [--workers 1 2 4 8 16 32 64] [--iterations 6] [--steal K] [--profile] [--quick]

The real driver runs: `orchestrator.loop.train` with its Run, Rollouts (sync / async, work
units, weight sync), score / advantages / update and logging, on a `SimCluster` — the real
`Cluster` and `Rollouts` whose three actor factories make the simulated workers of
bench/sim_workers.py (a calibrated wait
plus FLUX-size payloads in the object store) instead of models. Per worker count N it runs
the loop twice, all workers equal and with worker 0 `slow_factor`× slower, and measures per
iteration (warm-up and last iteration excluded, medians):

  overhead_s       iteration wall − the workers' waits on its critical path (slowest rollout
                   worker + each scorer's serial scoring + the update + publish + slowest load)
  driver_cpu_s     CPU seconds of the driver process
  rollout_to_update_s   last rollout finished → first learner rank starts its update (and the
                   part of it not spent scoring)
  sync_s           the sync phase; sync_overhead_s = sync_s − publish − the slowest load
  store            bytes the iteration created in the object store, bytes the workers read
                   back, and the store's peak use over the run
  tail_cost        step time with one slow worker ÷ step time with none, − 1

then fits the overhead with O(N) and O(N log N) and extrapolates where it reaches 2 % of a
300 s FLUX iteration. Calibration: the waits keep the phase shares measured on the tiny model
(bench/results/overhead.json: rollout busy vs learner busy vs score), scaled to
`--iteration-s`. With `--steal` a second sweep runs `--groups-per-worker` groups per worker in
`rollout.units_per_worker` units (work stealing, orchestrator/rollouts.py) against the static split;
with `--profile` the driver runs once more at the largest N under cProfile (CPU clock).
Writes bench/results/sim_scale.json, .md and .png.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import pickle
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)

from bench.sim_workers import SimRolloutWorker, SimSpec  # noqa: E402
from common import WORKLOAD  # noqa: E402
from sim_cluster import SimCluster, StoreSampler  # noqa: E402

RESULTS = ROOT / "bench" / "results"
FLUX_ITERATION_S = 300.0
BUDGET = 0.02 * FLUX_ITERATION_S  # 2 % of a FLUX iteration


def calibrated_spec(iteration_s: float, groups_per_worker: int) -> SimSpec:
    """Waits with the tiny model's measured phase shares (Ray run of bench/overhead.py)."""
    ref = json.loads((RESULTS / "overhead.json").read_text())
    busy, score = ref["busy_s_per_iteration"]["ray"], ref["phases_s"]["ray"]["score"]
    images = 64  # that run: 8 prompts × G 8, one rollout worker, one learner
    total = busy["rollout"] + busy["learner"] + score
    k = iteration_s / total
    return SimSpec(
        rollout_s_per_group=k * busy["rollout"] / groups_per_worker,
        learner_s=k * busy["learner"],
        reward_s_per_image=k * score / images,
    )


def overrides(n: int, groups_per_worker: int, group_size: int, iterations: int, units: int) -> list[str]:
    return [
        *WORKLOAD,
        f"rollout.num_workers={n}",
        "rollout.num_cpus=0.01",
        f"rollout.group_size={group_size}",
        f"rollout.units_per_worker={units}",
        f"orchestrator.prompts_per_iter={n * groups_per_worker}",
        f"orchestrator.iterations={iterations}",
        "orchestrator.checkpoint_every=100000",
        "orchestrator.dashboard=false",
        "orchestrator.eval_before_after=false",
        "learner.world_size=1",
    ]


def profiled(fn, iterations: int, top: int = 15) -> tuple[object, list[dict]]:
    """Run fn() under cProfile on the driver's CPU clock (waits cost nothing): the functions
    with the most own CPU time, per iteration (actor start-up included)."""
    import cProfile
    import pstats

    prof = cProfile.Profile(time.process_time)
    out = prof.runcall(fn)
    stats = pstats.Stats(prof).stats
    rows = sorted(stats.items(), key=lambda kv: -kv[1][2])[:top]
    return out, [
        {
            "function": f"{Path(f).name}:{line}({name})",
            "tottime_s_per_iteration": v[2] / iterations,
            "calls_per_iteration": v[1] / iterations,
        }
        for (f, line, name), v in rows
    ]


def run_once(n: int, spec: SimSpec, args, units: int = 1, profile: list | None = None) -> dict:
    from orchestrator.config import load_config
    from orchestrator.loop import train

    cfg = load_config(
        ROOT / "deploy/configs/tiny.yaml",
        overrides(n, args.groups_per_worker, args.group_size, args.iterations, units),
    )
    record: dict = {}
    with tempfile.TemporaryDirectory(prefix="sim_scale_") as tmp, StoreSampler() as store:
        run = functools.partial(
            train, cfg, Path(tmp) / "run", cluster_cls=functools.partial(SimCluster, spec=spec, record=record)
        )
        if profile is None:
            run()
        else:
            profile += profiled(run, args.iterations)[1]
        rows = [json.loads(x) for x in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    return iteration_stats(record, rows, store.samples, args.warmup)


def _in(calls, lo, hi, method):
    return [c for c in calls if c["method"] == method and lo <= c["start"] < hi]


def _busy(calls, method, lo, hi, per=max):
    """Per actor, summed durations of `method` calls started in [lo, hi); combined with `per`."""
    sums: dict = {}
    for c in _in(calls, lo, hi, method):
        sums[c["actor"]] = sums.get(c["actor"], 0.0) + c["end"] - c["start"]
    return per(sums.values()) if sums else 0.0


def iteration_stats(record: dict, rows: list[dict], samples: list, warmup: int) -> dict:
    calls, launches = record["calls"], record["launches"]  # launches: (iteration, wall, driver cpu)
    out = []
    # the last iteration ends in the run's final checkpoint: not measured
    for (k, t0, c0), (_, t1, c1) in zip(launches[warmup:-2], launches[warmup + 1 : -1]):
        roll = _busy(calls, "rollout", t0, t1)
        score = _busy(calls, "score", t0, t1)
        update = _busy(calls, "update", t0, t1)
        publish, load = _busy(calls, "publish", t0, t1), _busy(calls, "load_weights", t0, t1)
        rollout_end = max(c["end"] for c in _in(calls, t0, t1, "rollout"))
        update_start = min(c["start"] for c in _in(calls, t0, t1, "update"))
        created = [b for t, _, b, _ in samples if t0 <= t < t1]
        sync_s = rows[k]["time/sync"]
        out.append(
            {
                "iteration": k,
                "wall_s": t1 - t0,
                "waits_s": roll + score + update + publish + load,
                "overhead_s": t1 - t0 - (roll + score + update + publish + load),
                "driver_cpu_s": c1 - c0,
                "rollout_busy_max_s": roll,
                "score_busy_s": score,
                "update_busy_s": update,
                "rollout_to_update_s": update_start - rollout_end,
                "rollout_to_update_minus_scoring_s": update_start - rollout_end - score,
                "sync_s": sync_s,
                "sync_overhead_s": sync_s - publish - load,
                "phases_s": {key[5:]: v for key, v in rows[k].items() if key.startswith("time/")},
                "bytes_put": sum(c["bytes"] for c in _in(calls, t0, t1, "rollout")),
                "bytes_read": sum(
                    c["bytes"] for m in ("score", "update", "load_weights") for c in _in(calls, t0, t1, m)
                ),
                "store_created_bytes": (max(created) - min(created)) if len(created) > 1 else 0,
            }
        )
    med = {
        key: statistics.median(o[key] for o in out) for key in out[0] if key not in ("iteration", "phases_s")
    }
    med["phases_s"] = {p: statistics.median(o["phases_s"][p] for o in out) for p in out[0]["phases_s"]}
    med["store_peak_bytes"] = max((u for _, u, _, _ in samples), default=0)
    med["store_spilled_bytes"] = max((sp for *_, sp in samples), default=0)
    med["iterations_measured"] = len(out)
    return med


def fit(ns: list[int], ys: list[float]) -> dict:
    """Least squares y = a + b·f(N) for f = N and N log2 N; the better one extrapolated to BUDGET."""
    models = {"O(N)": lambda n: n, "O(N log N)": lambda n: n * math.log2(max(n, 1))}
    if len(ns) < 2:
        return {"best": None, "note": "one worker count: nothing to fit"}
    out = {}
    for name, f in models.items():
        x = np.array([f(n) for n in ns], dtype=float)
        A = np.stack([np.ones_like(x), x], axis=1)
        (a, b), *_ = np.linalg.lstsq(A, np.array(ys), rcond=None)
        resid = float(np.sum((A @ np.array([a, b]) - ys) ** 2))
        cross = None
        if b > 0:  # smallest N with a + b·f(N) >= BUDGET (doubling, then bisection)
            lo, hi = 1, 2
            while a + b * f(hi) < BUDGET and hi < 2**40:
                lo, hi = hi, hi * 2
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if a + b * f(mid) < BUDGET else (lo, mid)
            cross = hi
        out[name] = {"a_s": float(a), "b_s": float(b), "residual_ss": resid, "crosses_2pct_at_workers": cross}
    out["best"] = min(models, key=lambda m: out[m]["residual_ss"])
    return out


def serialization_check(spec: SimSpec, images: int = 2) -> dict:
    """The payload's CPU cost on the worker side: a real float32 torch `Trajectory` of FLUX size
    (N+1 = 17 latents per image, as rollout/trajectory.py stores) vs the sim's numpy, through
    Ray's serializer (put + get in this process). Not part of the driver's overhead."""
    import ray
    import torch

    from rollout.trajectory import Trajectory

    b, n = images, spec.transitions
    traj = Trajectory(
        prompts=["p"] * b,
        columns=torch.zeros(b, dtype=torch.long),
        latents=torch.zeros(b, n + 1, spec.latent_tokens, spec.latent_channels),
        log_probs=torch.zeros(b, n),
        sigmas=torch.linspace(1, 0, n + 1),
        train_steps=torch.zeros(b, 1, dtype=torch.long),
        train_ends=torch.ones(b, 1, dtype=torch.long),
        chunk_ids=torch.zeros(b, 1, dtype=torch.long),
        initial_seeds=torch.zeros(b, dtype=torch.long),
        noise_seeds=torch.zeros(b, dtype=torch.long),
        policy_version=0,
        noise_level=0.7,
        sde_kind="flow",
    )
    sim = np.zeros((b, n, spec.latent_tokens, spec.latent_channels), dtype=np.uint16)
    out = {}
    for name, obj in (("torch_trajectory_float32", traj), ("sim_numpy_bf16", sim)):
        puts, gets = [], []
        for _ in range(4):  # the first put touches fresh store pages: the median of 4 is the steady state
            t = time.perf_counter()
            ref = ray.put(obj)
            puts.append(time.perf_counter() - t)
            t = time.perf_counter()
            got = ray.get(ref)
            gets.append(time.perf_counter() - t)
            del ref, got
        out[name] = {
            "bytes_per_image": len(pickle.dumps(obj, protocol=5)) / b
            if name.startswith("sim")
            else traj.latents.nbytes / b,
            "put_s_per_image": statistics.median(puts) / b,
            "get_s_per_image": statistics.median(gets) / b,
        }
    return out


def actor_memory(n_probe: int = 4) -> dict:
    """PSS (MiB) of a few simulated rollout actors, from /proc: what each of the N costs."""
    import ray

    probes = [
        ray.remote(SimRolloutWorker).options(num_cpus=0.01).remote(SimSpec(), 2, i) for i in range(n_probe)
    ]
    pids = ray.get([a.pid.remote() for a in probes])
    pss = []
    for pid in pids:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss.append(int(line.split()[1]) / 1024)
    for a in probes:
        ray.kill(a)
    return {"actor_pss_mib_median": statistics.median(pss), "probed": n_probe}


def sweep(ns: list[int], spec: SimSpec, args, units: int = 1) -> dict:
    """Per N: all workers equal, then worker 0 slow; the tail cost between the two."""
    out = {}
    for n in ns:
        even = run_once(n, spec, args, units)
        slow = run_once(n, replace(spec, slow_worker=0), args, units)
        out[n] = {"even": even, "one_slow": slow, "tail_cost": slow["wall_s"] / even["wall_s"] - 1}
        print(
            f"N={n:3d} units/worker={units}: overhead {even['overhead_s'] * 1e3:.0f} ms, driver cpu "
            f"{even['driver_cpu_s'] * 1e3:.0f} ms, step {even['wall_s']:.2f} s, "
            f"one slow {slow['wall_s']:.2f} s (tail {out[n]['tail_cost']:+.0%})",
            flush=True,
        )
    return out


def start_ray(store_gib: float):
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(
        _node_ip_address="127.0.0.1",
        include_dashboard=False,
        num_cpus=2,
        log_to_driver=False,
        object_store_memory=int(store_gib * 2**30),
    )


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    p.add_argument(
        "--iterations", type=int, default=6, help="per run; the first --warmup and the last are not measured"
    )
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument(
        "--iteration-s", type=float, default=1.5, help="simulated iteration length the waits are scaled to"
    )
    p.add_argument(
        "--group-size",
        type=int,
        default=2,
        help="G (images per group): memory is N · G · 11 MiB per iteration",
    )
    p.add_argument("--groups-per-worker", type=int, default=1)
    p.add_argument(
        "--steal",
        type=int,
        default=0,
        metavar="K",
        help="also sweep --steal-workers with --steal-groups groups per worker: "
        "static split vs K units per worker",
    )
    p.add_argument("--steal-workers", type=int, nargs="+", default=[2, 4, 8, 16])
    p.add_argument("--steal-groups", type=int, default=4)
    p.add_argument(
        "--store-gib", type=float, default=2.0, help="object store size (Ray spills to disk beyond it)"
    )
    p.add_argument("--quick", action="store_true", help="4 workers, 4 iterations, short waits: < 2 min (CI)")
    p.add_argument("--out", default=str(RESULTS / "sim_scale"), help="output path without suffix")
    p.add_argument(
        "--profile",
        action="store_true",
        help="also profile the driver (cProfile, CPU clock) at the largest N",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.workers, args.iterations, args.iteration_s = [4], 4, 0.5
        args.steal_workers = [4]
    import ray

    from ray_bench import machine

    start_ray(args.store_gib)
    try:
        spec = calibrated_spec(args.iteration_s, args.groups_per_worker)
        memory = actor_memory()
        result = {
            "spec": asdict(spec),
            "actor_memory": memory,
            "serialization": serialization_check(spec),
            "sweep": sweep(args.workers, spec, args),
        }
        if args.profile:
            top: list = []
            run_once(max(args.workers), spec, args, profile=top)
            result["driver_profile"] = {
                "workers": max(args.workers),
                "iterations": args.iterations,
                "top": top,
            }
        if args.steal:
            steal_spec = calibrated_spec(args.iteration_s, args.steal_groups)
            sargs = argparse.Namespace(**{**vars(args), "groups_per_worker": args.steal_groups})
            result["steal"] = {
                "groups_per_worker": args.steal_groups,
                "units_per_worker": args.steal,
                "static": sweep(args.steal_workers, steal_spec, sargs, 1),
                "stealing": sweep(args.steal_workers, steal_spec, sargs, args.steal),
            }
        SimCluster.clear()
        result["machine"] = machine()
    finally:
        ray.shutdown()
    ns = list(result["sweep"])
    result["fit_overhead_s"] = fit(ns, [result["sweep"][n]["even"]["overhead_s"] for n in ns])
    result["fit_driver_cpu_s"] = fit(ns, [result["sweep"][n]["even"]["driver_cpu_s"] for n in ns])
    result["budget"] = {"flux_iteration_s": FLUX_ITERATION_S, "driver_budget_s": BUDGET}
    result["command"] = "python bench/sim_scale.py " + " ".join(sys.argv[1:] if argv is None else argv)
    from sim_report import write_report

    write_report(result, Path(args.out))
    return result


if __name__ == "__main__":
    main()
