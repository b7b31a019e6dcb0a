"""LearnerWorker: one DeepSpeed rank, as a plain class (made a Ray actor in orchestrator/cluster.py).

An update is a list of minibatches (learner/schedule.py, computed on the driver), one
optimizer step each. Each rank fetches only the trajectory batches that hold its shards,
recomputes the log-probs of its trained steps with `rollout.sde.sde_step(..., x_next=...)`
under the current weights, and applies the clipped objective of learner/objective.py. Backward
runs pass by pass (a chunk is never split across passes), every (sample, chunk) term weighted
so that the summed gradient, averaged over ranks by DeepSpeed, is the gradient of the
minibatch's per-sample mean of chunk losses. The policy is built by an injected factory, so
this package never imports the model-loading code. Weights and checkpoints: learner/publish.py.

Devices: the actor picks its own device from what Ray gave it (`engine.actor_device`), the
factory builds the policy there, and every tensor of the update meets on `self.device`: the
trajectory (CPU, from the object store) is moved there piece by piece. Counts that steer the
loop (passes) are host ints reduced over a gloo group of their own, never a CPU tensor in the
NCCL group.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections import defaultdict
from dataclasses import dataclass

import torch

from learner.config import LearnerConfig
from learner.engine import (
    actor_device,
    build_engine,
    check_engine_device,
    free_port,
    host_group,
    init_distributed,
    node_ip,
)
from learner.objective import chunk_losses, gaussian_mean_kl
from learner.publish import WeightPublisher
from learner.schedule import pack_units, sample_units
from rollout.sde import sde_step
from rollout.trajectory import Trajectory
from rollout.weight_sync import WeightGroup


@dataclass
class Minibatch:
    """This rank's part of one optimizer step: its rows of the local batch, the minibatch's
    global size (samples over all ranks), and a row to run zero-weight passes on when `rows`
    is empty."""

    rows: list[int]
    size: int
    fallback: int | None = None


def shard(indices: list[int], rank: int, world_size: int) -> list[int]:
    """Contiguous, near-equal split of `indices` over ranks."""
    n = len(indices)
    lo, hi = rank * n // world_size, (rank + 1) * n // world_size
    return indices[lo:hi]


class LearnerWorker(WeightPublisher):
    def __init__(self, policy_factory, cfg: LearnerConfig, rank: int, world_size: int):
        """`policy_factory(device=...)` builds the policy on the device this actor picks."""
        torch.set_num_threads(cfg.torch_threads)
        device = actor_device(cfg.num_gpus)  # here, in the actor: never the driver's view
        if device == "cpu":
            os.environ.setdefault("DS_ACCELERATOR", "cpu")  # before deepspeed is first imported
        self.cfg = cfg
        self.rank = rank
        self.world_size = world_size
        self.policy = policy_factory(device=device)
        self.device = self.policy.device  # every tensor of the update meets here
        self.engine = None
        self.host_group = None  # gloo group of the learner ranks for host-side counts (world_size > 1)
        self.reference = None  # frozen base transformer, for the KL term under full fine-tuning
        self.updates = 0
        self.samples_done = 0  # trained (active) samples of this rank, for the worker table
        self.seconds = 0.0  # time spent in update()
        self.weight_group: WeightGroup | None = None  # rank 0, broadcast weight sync only

    # -- setup -------------------------------------------------------------------------------
    def rendezvous(self) -> tuple[str, int]:
        """(address, free port) of this rank, used as the process group's master by rank 0."""
        return node_ip(), free_port()

    def setup(self, master_addr: str, master_port: int) -> dict:
        import torch.distributed as dist

        if not dist.is_initialized():  # (a single-process LocalCluster may have done it already)
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            init_distributed(self.rank, self.world_size, master_addr, master_port, backend)
        self.host_group = host_group(self.world_size)
        # the KL reference: under LoRA the same transformer with its adapters off (no copy);
        # under full fine-tuning a frozen copy taken before any update
        if self.cfg.kl_coef > 0 and not self.policy.has_adapters:
            self.reference = copy.deepcopy(self.policy.transformer).requires_grad_(False).eval()
        self.policy.prepare_training()  # trainable weights only (LoRA adapters, or all)
        self.engine = build_engine(
            self.policy.transformer, self.cfg, bf16=self.policy.dtype == torch.bfloat16
        )
        check_engine_device(self.engine, self.device)
        self.policy.transformer = self.engine  # velocity() now runs through the engine
        return {"rank": self.rank, "pid": os.getpid(), "node": os.uname().nodename}

    # -- one iteration's update ------------------------------------------------------------------
    def update(
        self,
        batch_refs: list,
        batch_sizes: list[int],
        samples: list[int],
        advantages: list,
        minibatches: list[list[int]],
    ) -> dict:
        """One optimizer step per entry of `minibatches` (lists of positions into `samples`, the
        global indices of the trained samples in the concatenated batches; `advantages[i]` is
        samples[i]'s). This rank trains its shard of each minibatch; a rank whose shard is empty
        fetches the minibatch's first sample to run zero-weight passes (learner/schedule.py)."""
        import ray

        start = time.perf_counter()
        shards = [shard(mb, self.rank, self.world_size) for mb in minibatches]
        fallback = [mb[0] if not part else None for mb, part in zip(minibatches, shards)]
        need = sorted({p for part in shards for p in part} | {p for p in fallback if p is not None})
        offsets = [sum(batch_sizes[:i]) for i in range(len(batch_sizes))]

        def batch_of(pos: int) -> int:  # the rollout batch that holds sample position `pos`
            return max(i for i, off in enumerate(offsets) if off <= samples[pos])

        wanted: dict[int, list[int]] = defaultdict(list)  # batch -> positions, in `need` order
        for pos in need:
            wanted[batch_of(pos)].append(pos)
        needed = [batch_refs[b] for b in wanted]
        if needed and isinstance(needed[0], ray.ObjectRef):
            needed = ray.get(needed)  # only the batches this rank's shards live in
        parts = [
            batch.select([samples[p] - offsets[b] for p in wanted[b]]) for b, batch in zip(wanted, needed)
        ]
        traj = Trajectory.cat(parts) if parts else None
        order = [p for b in wanted for p in wanted[b]]  # positions in local row order
        row_of = {p: i for i, p in enumerate(order)}
        adv = torch.tensor(
            [advantages[p] for p in order], dtype=torch.float32
        )  # [b] or [b, J] per-chunk mixes
        parts = [
            Minibatch(
                rows=[row_of[p] for p in part], size=len(mb), fallback=row_of[fb] if fb is not None else None
            )
            for mb, part, fb in zip(minibatches, shards, fallback)
        ]
        fetch_s = time.perf_counter() - start
        stats = self.train(traj, adv, parts)
        stats.update(learner_fetch_s=fetch_s, learner_s=time.perf_counter() - start)
        self.samples_done += sum(len(p) for p in shards)
        self.seconds += stats["learner_s"]
        return stats

    def train(self, traj: Trajectory | None, adv: torch.Tensor, minibatches: list["Minibatch"]) -> dict:
        """One optimizer step per minibatch over this rank's rows of `traj`; the steps' stats
        aggregated by `aggregate_steps`."""
        steps = [self._minibatch(traj, adv, part) for part in minibatches]
        self.updates += 1
        return aggregate_steps(steps)

    def _minibatch(self, traj: Trajectory | None, adv: torch.Tensor, part: "Minibatch") -> dict:
        """One optimizer step over this rank's rows of one minibatch: every (sample, chunk) term
        ℓ_bj weighted 1 / (minibatch size · chunks of b), so that the ranks' summed gradient,
        averaged by DeepSpeed and multiplied back by the world size, is the gradient of the
        minibatch's per-sample mean of chunk losses (learner/objective.py). Backward runs pass by
        pass; DeepSpeed must see every backward but the last as inside the accumulation window
        (with ZeRO-2 each backward otherwise replaces the gradients of the one before), and every
        rank runs as many backwards as the others (each reduces collectively, the count over the
        host group): a rank with fewer repeats a pass of its own, or of its fallback sample, with
        weight zero. Index bookkeeping stays on the host; the losses live on `self.device`."""
        engine, cfg = self.engine, self.cfg
        units = sample_units(traj.chunk_ids, part.rows) if part.rows else []
        n = traj.num_transitions + 1
        key = (
            (lambda r, c: (int(traj.columns[r]), int(traj.train_steps[r, c])))
            if traj.shared_inputs
            else (lambda r, c: (r, c))
        )
        passes = pack_units(units, cfg.micro_batch, key) if units else []
        spare = passes[0] if passes else sample_units(traj.chunk_ids, [part.fallback])[:1]
        n_passes = _all_reduce(len(passes), "max", self.host_group)
        chunks_of = {r: sum(1 for u in units if u[0] == r) for r in part.rows}
        steps_of = {r: int((traj.chunk_ids[r] >= 0).sum()) for r in part.rows}
        stats: dict[str, float] = defaultdict(float)
        stats.update(ratio_min=float("inf"), ratio_max=float("-inf"))
        cond = self.policy.encode(traj.prompts)
        for i in range(n_passes):
            live = i < len(passes)
            group = passes[i] if live else spare
            losses, ratio, kl, log_ratio = self._pass(traj, adv, group, cond, n)  # [U], [U], [T] | None, [T]
            weights = torch.tensor(
                [1.0 / (part.size * chunks_of.get(r, 1)) for r, _ in group], device=losses.device
            )
            total = (weights * losses).sum()
            if kl is not None:
                kl_w = torch.tensor(
                    [1.0 / (part.size * steps_of.get(r, 1)) for r, cols in group for _ in cols],
                    device=kl.device,
                )
                kl_term = (kl_w * kl).sum()
                total = total + cfg.kl_coef * kl_term
            engine.set_gradient_accumulation_boundary(i == n_passes - 1)
            engine.backward(total * (self.world_size if live else 0.0))
            if live:
                self._accumulate(
                    stats, total, weights, losses, ratio, log_ratio, kl_term if kl is not None else None
                )
        engine.step()
        norm = engine.get_global_grad_norm() if hasattr(engine, "get_global_grad_norm") else None
        stats["grad_norm"] = float(norm) if norm is not None else 0.0
        if not stats["units"]:
            stats.update(ratio_min=1.0, ratio_max=1.0)
        return stats

    def _accumulate(self, stats, total, weights, losses, ratio, log_ratio, kl_term) -> None:
        """Sums of one live pass into the minibatch stats (learner/objective.py's definitions)."""
        cfg = self.cfg
        with torch.no_grad():
            value = float((weights * losses).sum())
            stats["nonfinite_loss"] += not math.isfinite(float(total))
            stats["loss"] += value
            stats["kl"] += float(kl_term) if kl_term is not None else 0.0
            high = cfg.clip_range if cfg.clip_range_high is None else cfg.clip_range_high
            stats["units"] += len(ratio)
            stats["clipped"] += float(((ratio < 1 - cfg.clip_range) | (ratio > 1 + high)).sum())
            stats["ratio_sum"] += float(ratio.sum())
            stats["ratio_dev_sum"] += float((ratio - 1).abs().sum())
            stats["ratio_min"] = min(stats["ratio_min"], float(ratio.min()))
            stats["ratio_max"] = max(stats["ratio_max"], float(ratio.max()))
            stats["approx_kl_sum"] += float((0.5 * log_ratio**2).sum())
            stats["transitions"] += len(log_ratio)

    def _pass(self, traj: Trajectory, adv: torch.Tensor, units: list, cond, n: int):
        """One transformer call over the transitions of `units` [(row, cols)]: per-unit chunk
        losses ℓ [U] and ratios [U], per-transition KL to the reference [T] (or None) and
        log-ratios [T], all on `self.device`; the indices and the trajectory stay on the host
        (what the object store gave us) and are moved piece by piece."""
        device = self.device
        rows = torch.tensor([r for r, cols in units for _ in cols])  # [T]
        cols = torch.tensor([c for _, cs in units for c in cs])
        t, e = traj.train_steps[rows, cols], traj.train_ends[rows, cols]  # [T] start and end indices
        x, x_next = traj.latents[rows, t].to(device), traj.latents[rows, e].to(device)  # [T, *latent]
        sigma, sigma_next = traj.sigmas[t].to(device), traj.sigmas[e].to(device)
        cond_rows = cond.select(rows)
        # E-GRPO: members of a column leave the anchor at the same x_k; evaluate it once.
        keys = traj.columns[rows] * n + t if traj.shared_inputs else None
        guard = float(traj.sigmas[1])
        velocity = self._velocity(x, sigma, cond_rows, keys)
        step = sde_step(
            x,
            velocity,
            sigma,
            sigma_next,
            noise_level=traj.noise_level,
            kind=traj.sde_kind,
            x_next=x_next,
            guard_sigma=guard,
        )
        kl = None
        if self.cfg.kl_coef > 0:
            with torch.no_grad():
                v_ref = self._velocity(x, sigma, cond_rows, keys, reference=True)
                ref = sde_step(
                    x,
                    v_ref,
                    sigma,
                    sigma_next,
                    noise_level=traj.noise_level,
                    kind=traj.sde_kind,
                    x_next=x_next,
                    guard_sigma=guard,
                )
            kl = gaussian_mean_kl(step.mean, ref.mean, step.std)  # [T]
        # [U, L] layout: one chunk per row, L = the longest unit, masked beyond each unit's length
        width = max(len(cs) for _, cs in units)
        index = torch.full((len(units), width), -1, dtype=torch.long)
        lo = 0
        for u, (_, cs) in enumerate(units):
            index[u, : len(cs)] = torch.arange(lo, lo + len(cs))
            lo += len(cs)
        mask = (index >= 0).to(device)

        def pick(z):  # [T] -> [U, L]
            return z[index.clamp(min=0).to(z.device)]

        old = traj.log_probs[rows, t].to(device)
        unit_rows = [r for r, _ in units]
        chunk = torch.tensor([int(traj.chunk_ids[r, cs[0]]) for r, cs in units])
        a = adv[unit_rows]
        a = (a if a.ndim == 1 else a[torch.arange(len(units)), chunk]).to(device)  # per-chunk reward mixes
        losses, ratio, _, log_ratio, _ = chunk_losses(
            pick(step.log_prob),
            pick(old),
            a,
            torch.zeros_like(index, device=device),
            mask=mask,
            clip_range=self.cfg.clip_range,
            clip_range_high=self.cfg.clip_range_high,
        )
        return losses[:, 0], ratio[:, 0].detach(), kl, (step.log_prob - old).detach()

    def _velocity(self, x, sigma, cond, keys=None, reference: bool = False) -> torch.Tensor:
        """policy.velocity, once per distinct key when `keys` are given (host indices), under
        the frozen reference weights when `reference` (LoRA: adapters off; full: the copy)."""
        if keys is not None:
            first, inverse = first_of_each(keys)  # [U] rows to compute, [B] row -> its copy
            return self._velocity(x[first], sigma[first], cond.select(first), None, reference)[inverse]
        if not reference:
            return self.policy.velocity(x, sigma, cond)
        if self.reference is None:
            with self.policy.adapters_disabled():
                return self.policy.velocity(x, sigma, cond)
        live, self.policy.transformer = self.policy.transformer, self.reference
        try:
            return self.policy.velocity(x, sigma, cond)
        finally:
            self.policy.transformer = live

    def info(self) -> dict:
        """Small facts for the worker table: pid, node, rank, updates, samples trained, busy seconds."""
        return {
            "pid": os.getpid(),
            "node": os.uname().nodename,
            "rank": self.rank,
            "updates": self.updates,
            "images": self.samples_done,
            "seconds": self.seconds,
        }


def worst(values) -> float:
    """The largest value, or the first non-finite one (Python's max drops a NaN by position)."""
    values = list(values)
    bad = [v for v in values if not math.isfinite(v)]
    return bad[0] if bad else max(values, default=0.0)


def first_of_each(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For keys [B]: the first row holding each distinct key [U], and for every row the index of
    its key among them [B] (so values computed on the U rows expand back with `[inverse]`)."""
    unique, inverse = torch.unique(keys, return_inverse=True)
    rows = torch.arange(len(keys))
    first = torch.full((len(unique),), len(keys)).scatter_reduce(0, inverse, rows, "amin")  # [U]
    return first, inverse


def aggregate_steps(steps: list[dict]) -> dict:
    """One iteration's stats from its optimizer steps' (`_minibatch`; orchestrator/metrics.py
    documents each): loss and kl are this rank's shares of the mean over all steps, grad_norm the
    largest over all steps (a non-finite one wins), ratio statistics per (sample, chunk) over all
    steps, ratio_mean_first over the first step's chunks and ratio_dev_later over the others';
    nonfinite_loss counts this rank's non-finite backward losses, nonfinite_grad the steps with a
    non-finite gradient norm (global: the same on every rank)."""

    def total(key: str, part: list[dict] = steps) -> float:
        return sum(s[key] for s in part)

    units, first, later = total("units"), steps[:1], steps[1:]
    n_first, n_later = total("units", first), total("units", later)
    return {
        "loss": total("loss") / max(len(steps), 1),
        "kl": total("kl") / max(len(steps), 1),
        "chunks": units,
        "clip_fraction": total("clipped") / max(units, 1),
        "ratio_mean": total("ratio_sum") / max(units, 1),
        "approx_kl": total("approx_kl_sum") / max(total("transitions"), 1),
        "ratio_min": min((s["ratio_min"] for s in steps if s["units"]), default=1.0),
        "ratio_max": max((s["ratio_max"] for s in steps if s["units"]), default=1.0),
        "ratio_mean_first": total("ratio_sum", first) / n_first if n_first else 1.0,
        "first_chunks": n_first,
        "ratio_dev_later": total("ratio_dev_sum", later) / n_later if n_later else 0.0,
        "later_chunks": n_later,
        "grad_norm": worst(s["grad_norm"] for s in steps),
        "optimizer_steps": len(steps),
        "nonfinite_loss": total("nonfinite_loss"),
        "nonfinite_grad": sum(not math.isfinite(s["grad_norm"]) for s in steps),
    }


def _all_reduce(value: int, op: str, group=None) -> int:
    """An int summed ("sum") or maximised ("max") over the learner ranks: a CPU tensor over the
    host gloo `group` (None: one rank, nothing to reduce)."""
    import torch.distributed as dist

    if group is None:
        return value
    t = torch.tensor([value], dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX, group=group)
    return int(t.item())
