"""LearnerWorker: one DeepSpeed rank, as a plain class (made a Ray actor in orchestrator/cluster.py).

Each rank fetches only the trajectory batches that hold its shard, recomputes the
log-probs of the trained transitions with `rollout.sde.sde_step(..., x_next=...)` under
the current weights, and applies `clipped_objective`. Backward runs block by block
(chunks are never split across blocks), with the loss of every block scaled so that the
summed gradient, averaged over ranks by DeepSpeed, is the gradient of the global mean
over (sample, chunk). The policy is built by an injected factory, so this package never
imports the model-loading code.

Devices: the actor picks its own device from what Ray gave it (`engine.actor_device`), the
factory builds the policy there, and every tensor of the update meets on `self.device`: the
trajectory (CPU, from the object store) is moved there piece by piece. Counts that steer the
loop (passes, chunks) are host ints reduced over a gloo group of their own, never a CPU tensor
in the NCCL group.
"""

from __future__ import annotations

import copy
import os
import time
from collections import defaultdict

import torch

from learner.chunking import column_blocks
from learner.config import LearnerConfig
from learner.engine import actor_device, build_engine, check_engine_device, free_port, host_group, init_distributed, node_ip
from learner.objective import clipped_objective, gaussian_mean_kl
from rollout.sde import sde_step
from rollout.trajectory import Trajectory
from rollout.weight_sync import DTYPE_NAMES, Checksum, TensorSpec, WeightGroup, pack, plan_buckets

PUBLISH_BUCKET_BYTES = 256 << 20  # ZeRO-3 gathers this much at a time to publish / save


def shard(indices: list[int], rank: int, world_size: int) -> list[int]:
    """Contiguous, near-equal split of `indices` over ranks."""
    n = len(indices)
    lo, hi = rank * n // world_size, (rank + 1) * n // world_size
    return indices[lo:hi]


class LearnerWorker:
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
        self.engine = build_engine(self.policy.transformer, self.cfg, bf16=self.policy.dtype == torch.bfloat16)
        check_engine_device(self.engine, self.device)
        self.policy.transformer = self.engine  # velocity() now runs through the engine
        return {"rank": self.rank, "pid": os.getpid(), "node": os.uname().nodename}

    # -- one iteration's update ------------------------------------------------------------------
    def update(self, batch_refs: list, batch_sizes: list[int], samples: list[int], active: list[bool],
               advantages: list[float]) -> dict:
        """Train on this rank's shard of `samples` (global indices into the concatenated
        batches; `active` False = padding that only keeps ranks in step)."""
        import ray

        start = time.perf_counter()
        mine = shard(list(range(len(samples))), self.rank, self.world_size)
        offsets = [sum(batch_sizes[:i]) for i in range(len(batch_sizes))]
        wanted: dict[int, list[int]] = defaultdict(list)
        for k in mine:
            g = samples[k]
            b = max(i for i, off in enumerate(offsets) if off <= g)
            wanted[b].append(g - offsets[b])
        needed = [batch_refs[b] for b in wanted]
        if needed and isinstance(needed[0], ray.ObjectRef):
            needed = ray.get(needed)  # only the batches this rank's shard lives in
        fetched = dict(zip(wanted, needed))
        traj = Trajectory.cat([fetched[b].select(rows) for b, rows in wanted.items()])
        adv = torch.tensor([advantages[k] for k in mine], dtype=torch.float32)  # [b] or [b, J] per-chunk
        mask = torch.tensor([active[k] for k in mine], dtype=torch.bool)
        fetch_s = time.perf_counter() - start
        stats = self.train(traj, adv, mask)
        stats.update(learner_fetch_s=fetch_s, learner_s=time.perf_counter() - start)
        self.samples_done += int(mask.sum())
        self.seconds += stats["learner_s"]
        return stats

    def train(self, traj: Trajectory, adv: torch.Tensor, active: torch.Tensor) -> dict:
        """`minibatches` optimizer steps over the local batch; returns aggregated stats."""
        totals: dict[str, float] = defaultdict(float)
        ratio_min, ratio_max, first = float("inf"), float("-inf"), None
        for mb in torch.tensor_split(torch.arange(len(traj)), self.cfg.minibatches):
            step = self._minibatch(traj.select(mb), adv[mb], active[mb])
            first = first or step
            for k in ("loss", "clip_fraction", "ratio_mean", "approx_kl"):
                totals[k] += step[k] * step["chunks"]
            totals["chunks"] += step["chunks"]
            ratio_min, ratio_max = min(ratio_min, step["ratio_min"]), max(ratio_max, step["ratio_max"])
        n = max(totals["chunks"], 1)
        self.updates += 1
        return {
            "loss": totals["loss"] / n,
            "clip_fraction": totals["clip_fraction"] / n,
            "ratio_mean": totals["ratio_mean"] / n,
            "approx_kl": totals["approx_kl"] / n,
            "ratio_min": ratio_min,
            "ratio_max": ratio_max,
            "ratio_mean_first": first["ratio_mean"],
            "chunks": totals["chunks"],
            "grad_norm": first.get("grad_norm", 0.0),
            "kl": first.get("kl", 0.0),
        }

    def _minibatch(self, traj: Trajectory, adv: torch.Tensor, active: torch.Tensor) -> dict:
        """One optimizer step over this rank's minibatch, one backward per (micro-batch, column
        block). DeepSpeed must see every backward but the last as inside the accumulation
        window (with ZeRO-2 each backward otherwise replaces the gradients of the one before),
        and every rank must run as many backwards as the others (each reduces collectively):
        a rank with fewer runs its first pass again with weight zero."""
        engine, cfg, dev = self.engine, self.cfg, self.device
        mask = active[:, None] & (traj.train_steps >= 0)  # [b, S] on the host: -1 pads are never trained
        passes = [(mb, cols) for mb in torch.split(torch.arange(len(traj)), cfg.micro_batch)
                  for cols in column_blocks(traj.chunk_ids)]
        n_passes = _all_reduce(len(passes), "max", self.host_group)
        n_local = _count_chunks(traj.chunk_ids, mask)
        n_chunks = _all_reduce(n_local, "sum", self.host_group)
        n_steps = _all_reduce(int(mask.sum()), "sum", self.host_group)
        stats: dict[str, float] = defaultdict(float)
        ratio_min, ratio_max = float("inf"), float("-inf")
        cond = self.policy.encode(traj.prompts)
        for i in range(n_passes):
            (mb, cols), weight = (passes[i], 1.0) if i < len(passes) else (passes[0], 0.0)
            ids, m = traj.chunk_ids[mb][:, cols], mask[mb][:, cols]  # [mb, |cols|] host (counts)
            log_prob, old, kl = self._recompute(traj, mb, cols, cond)  # [mb, |cols|] each, on dev
            m_dev = m.to(dev)
            loss, s = clipped_objective(log_prob, old, adv[mb].to(dev), ids.to(dev), clip_range=cfg.clip_range,
                                        mask=m_dev)
            n_block = _count_chunks(ids, m) if weight else 0
            # Σ_blocks loss·n_block/n_chunks is the global mean over (sample, chunk); the KL
            # term is the mean over trained transitions; × world size undoes DeepSpeed's average.
            total = loss * (n_block / max(n_chunks, 1))
            if kl is not None:
                kl_sum = (kl * m_dev).sum()
                total = total + weight * cfg.kl_coef * kl_sum / max(n_steps, 1)
                stats["kl"] += weight * kl_sum.item()
            engine.set_gradient_accumulation_boundary(i == n_passes - 1)
            engine.backward(total * self.world_size)
            if n_block:
                for k in ("clip_fraction", "ratio_mean", "approx_kl"):
                    stats[k] += s[k] * n_block
                stats["loss"] += loss.item() * n_block
                ratio_min, ratio_max = min(ratio_min, s["ratio_min"]), max(ratio_max, s["ratio_max"])
        engine.step()
        n = max(n_local, 1)
        out = {k: v / n for k, v in stats.items() if k != "kl"}
        out.update(chunks=n_local, ratio_min=ratio_min if n_local else 1.0, ratio_max=ratio_max if n_local else 1.0)
        for k in ("loss", "clip_fraction", "ratio_mean", "approx_kl"):
            out.setdefault(k, 0.0 if k != "ratio_mean" else 1.0)
        out["kl"] = stats["kl"] / max(int(mask.sum()), 1)
        norm = engine.get_global_grad_norm() if hasattr(engine, "get_global_grad_norm") else None
        out["grad_norm"] = float(norm) if norm is not None else 0.0
        return out

    def _recompute(self, traj: Trajectory, rows: torch.Tensor, cols: list[int], cond):
        """New log-probs (with grad), old log-probs and, with a reference, the KL to it, all
        [rows, cols] on the policy's device; every column of the block in one transformer call.
        `rows` and the trajectory stay on the host (indices, and what the object store gave us)."""
        t = traj.train_steps[rows][:, cols].clamp(min=0)  # [b, c]; pads read transition 0, masked later
        b, c = t.shape
        r = rows[:, None].expand(b, c)
        flat = lambda z: z.transpose(0, 1).reshape(b * c, *z.shape[2:])  # column-major: [c·b, ...]
        dev = self.device
        x = flat(traj.latents[r, t]).to(dev)  # [c·b, *latent]
        x_next = flat(traj.latents[r, t + 1]).to(dev)
        sigma, sigma_next = flat(traj.sigmas[t]).to(dev), flat(traj.sigmas[t + 1]).to(dev)  # [c·b]
        cond_rows = cond.take(rows.repeat(c))
        # E-GRPO: members of a column leave the anchor at the same x_t; evaluate it once.
        keys = flat(traj.group_ids[r] * (traj.num_transitions + 1) + t) if traj.shared_inputs else None
        velocity = self._velocity(x, sigma, cond_rows, keys)
        step = sde_step(x, velocity, sigma, sigma_next, noise_level=traj.noise_level, kind=traj.sde_kind, x_next=x_next)
        kl = None
        if self.cfg.kl_coef > 0:
            with torch.no_grad():
                v_ref = self._velocity(x, sigma, cond_rows, keys, reference=True)
                ref = sde_step(x, v_ref, sigma, sigma_next, noise_level=traj.noise_level, kind=traj.sde_kind, x_next=x_next)
            kl = gaussian_mean_kl(step.mean, ref.mean, step.std).reshape(c, b).T
        return step.log_prob.reshape(c, b).T, traj.log_probs[r, t].to(dev), kl

    def _velocity(self, x, sigma, cond, keys=None, reference: bool = False) -> torch.Tensor:
        """policy.velocity, once per distinct key when `keys` are given (host indices), under
        the frozen reference weights when `reference` (LoRA: adapters off; full: the copy)."""
        if keys is not None:
            unique, inverse = torch.unique(keys, return_inverse=True)
            first = torch.full((len(unique),), len(keys)).scatter_reduce(0, inverse, torch.arange(len(keys)), "amin")
            return self._velocity(x[first], sigma[first], cond.take(first), None, reference)[inverse]
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

    # -- weights and checkpoints -------------------------------------------------------------
    def trainable_specs(self) -> list[TensorSpec]:
        """Name, full shape and dtype of every trainable weight, in name order (ZeRO-3 keeps the
        full shape in `ds_shape`; its parameters hold only their partition)."""
        params = dict(self.engine.module.named_parameters())
        return [TensorSpec(k, tuple(getattr(params[k], "ds_shape", params[k].shape)), DTYPE_NAMES[params[k].dtype])
                for k in sorted(self.policy.trainable_names)]

    def _buckets(self, plan: list[list[TensorSpec]]):
        """(bucket, its full weights {name: tensor on this rank's device}), one bucket at a time:
        under ZeRO-3 gathered for the bucket and released after it (call on every rank)."""
        from deepspeed import zero

        params = dict(self.engine.module.named_parameters())
        for bucket in plan:
            group = [params[s.name] for s in bucket]
            with zero.GatheredParameters(group, modifier_rank=None, enabled=self.cfg.zero_stage == 3):
                yield bucket, {s.name: p.detach() for s, p in zip(bucket, group)}

    def publish(self) -> tuple[dict | None, str | None]:
        """(trainable weights as CPU tensors, checksum) from rank 0; (None, None) elsewhere: the
        object-store sync and checkpoints. Call on every rank (ZeRO-3 gathers collectively, a
        bucket at a time); the checksum is computed on the device, before the copy."""
        state, checksum = {}, Checksum()
        for _, tensors in self._buckets(plan_buckets(self.trainable_specs(), PUBLISH_BUCKET_BYTES)):
            if self.rank == 0:
                for name, t in tensors.items():
                    checksum.update(name, t)
                    state[name] = t.to("cpu", copy=True)
        return (state, checksum.hexdigest()) if self.rank == 0 else (None, None)

    def join_weight_group(self, master_addr: str, master_port: int, world_size: int, backend: str,
                          timeout_s: float, bucket_bytes: int) -> list | None:
        """Call on every rank. Rank 0 founds the weight broadcast group (as its rank 0; the
        rollout workers join as 1..R) and returns the bucket plan they receive by (from the
        weights' specs: nothing is gathered or copied)."""
        if self.rank != 0:
            return None
        if self.weight_group is not None:
            self.weight_group.close()
        self.weight_group = WeightGroup(master_addr, master_port, 0, world_size, backend, timeout_s)
        return plan_buckets(self.trainable_specs(), bucket_bytes)

    def broadcast_weights(self, plan: list) -> str | None:
        """Send the trainable weights to the weight group straight from the live parameters, one
        packed bucket at a time (rank 0; the other ranks only join the ZeRO-3 gathers). No CPU
        copy; returns the checksum on rank 0, computed on the device."""
        checksum = Checksum()
        for bucket, tensors in self._buckets(plan):
            if self.rank == 0:
                self.weight_group.send_bucket(pack(tensors, bucket))  # first: receivers copy while we digest
                for name, t in tensors.items():
                    checksum.update(name, t)
        return checksum.hexdigest() if self.rank == 0 else None

    def save(self, path: str) -> None:
        """DeepSpeed engine state (model, optimizer partitions) under path/deepspeed, and on
        rank 0 the trainable weights as path/policy.safetensors."""
        from safetensors.torch import save_file

        # frozen weights (the base model under LoRA) are the model's own files: never re-saved
        self.engine.save_checkpoint(os.path.join(path, "deepspeed"), tag="state", save_latest=False,
                                    exclude_frozen_parameters=True)
        state, _ = self.publish()
        if state is not None:
            save_file({k: v.contiguous() for k, v in state.items()}, os.path.join(path, "policy.safetensors"))

    def load(self, path: str) -> None:
        has_frozen = any(not p.requires_grad for p in self.engine.module.parameters())  # saved without them
        load_path, _ = self.engine.load_checkpoint(os.path.join(path, "deepspeed"), tag="state",
                                                   load_module_strict=not has_frozen)
        if load_path is None:
            raise FileNotFoundError(f"no DeepSpeed state in {path}/deepspeed")

    def info(self) -> dict:
        """Small facts for the worker table: pid, node, rank, updates, samples trained, busy seconds."""
        return {"pid": os.getpid(), "node": os.uname().nodename, "rank": self.rank, "updates": self.updates,
                "images": self.samples_done, "seconds": self.seconds}


def _count_chunks(chunk_ids: torch.Tensor, mask: torch.Tensor) -> int:
    """Number of present (sample, chunk) pairs."""
    present = set()
    for b, (row, m) in enumerate(zip(chunk_ids.tolist(), mask.tolist())):
        present.update((b, j) for j, keep in zip(row, m) if keep and j >= 0)
    return len(present)


def _all_reduce(value: int, op: str, group=None) -> int:
    """An int summed ("sum") or maximised ("max") over the learner ranks: a CPU tensor over the
    host gloo `group` (None: one rank, nothing to reduce)."""
    import torch.distributed as dist

    if group is None:
        return value
    t = torch.tensor([value], dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX, group=group)
    return int(t.item())
