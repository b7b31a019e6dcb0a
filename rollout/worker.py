"""RolloutWorker: a plain class (made a Ray actor only in orchestrator/cluster.py).

It loads the policy once, receives whole prompt groups, runs the iteration's rollout plan
(`plan.at(iteration)`) with group-shared initial noise, picks what each sample trains with the
injected `select` (learner.chunking.ChunkSelector, handed in by orchestrator/cluster.py), and
returns the decoded images and the Trajectory (which Ray keeps in the object store: the
driver only ever holds their refs) plus a small info dict.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
import warnings

import numpy as np
import torch

from rollout.config import ModelConfig, RolloutConfig, schedule_shift
from rollout.grid import image_grid
from rollout.plan import RolloutPlan
from rollout.models.base import Policy
from rollout.policy import DTYPES, policy_from_config
from rollout.sampler import generate, group_seeds, noise_from_seeds, sample_ode
from rollout.weight_sync import WeightGroup

__all__ = ["DTYPES", "RolloutWorker", "pick_device"]  # DTYPES moved to rollout.policy; kept importable here
PROBE_SEED, PROBE_SIGMA = 20_240_601, 0.5  # the fixed input of `probe`


def pick_device(num_gpus: float) -> str:
    """This actor's device, decided inside it from what Ray gave it (never on the driver)."""
    if num_gpus > 0 and not torch.cuda.is_available():
        warnings.warn(
            f"rollout.num_gpus is {num_gpus} but this actor sees no CUDA device; it runs on the CPU",
            stacklevel=2,
        )
    return "cuda" if num_gpus > 0 and torch.cuda.is_available() else "cpu"


class RolloutWorker:
    def __init__(
        self,
        model: ModelConfig,
        rollout: RolloutConfig,
        plan: RolloutPlan,
        run_seed: int,
        index: int,
        select=None,
    ):
        torch.set_num_threads(rollout.torch_threads)
        self.cfg = rollout
        self.plan = plan
        self.select = (
            select  # (latents, trainable, seeds) -> (train_steps, chunk_ids); None: every trainable step
        )
        self.run_seed = run_seed
        self.index = index
        self.policy: Policy = policy_from_config(model, device=pick_device(rollout.num_gpus))
        self.policy.requires_grad_(False)
        self.policy_version = 0
        self.images_done = 0
        self.seconds = 0.0  # time spent in rollout(): images_done / seconds is the busy throughput
        self.plan_shift = schedule_shift(model, rollout)
        self.weight_group: WeightGroup | None = None

    def info(self) -> dict:
        """Small facts for the worker table: pid, node, version, images generated, busy seconds."""
        return {
            "pid": os.getpid(),
            "node": os.uname().nodename,
            "policy_version": self.policy_version,
            "images": self.images_done,
            "seconds": self.seconds,
            "index": self.index,
        }

    def load_weights(self, state: dict[str, torch.Tensor], version: int) -> str:
        """Install published weights; returns their checksum (compared with the learner's),
        computed on this worker's device from the installed weights themselves."""
        self.policy.load_trainable_state(state)
        self.policy_version = version
        return self.policy.checksum()

    def checksum(self) -> str:
        return self.policy.checksum()

    @torch.no_grad()
    def probe(self, prompt: str) -> str:
        """Digest of the velocity on a fixed input (seeded noise, σ = PROBE_SIGMA, `prompt`): it
        changes when, and only when, the weights the forward actually uses change. The driver
        compares it across each sync, which a state-dict checksum cannot do: weights loaded into
        parameters the forward never reads (a LoRA adapter not bound) still match the learner's."""
        x = noise_from_seeds([PROBE_SEED], self.policy.latent_shape, self.policy.device)
        velocity = self.policy.velocity(
            x, torch.full((1,), PROBE_SIGMA, device=self.policy.device), self.policy.encode([prompt])
        )
        return hashlib.blake2b(velocity.float().cpu().numpy().tobytes(), digest_size=16).hexdigest()

    def export_weights(self) -> dict[str, torch.Tensor]:
        """This worker's trainable weights (CPU): the source for a replacement worker when weights
        travel by broadcast and the learner is busy."""
        return self.policy.trainable_state()

    # -- broadcast weight sync (GPU clusters; gloo on CPU) ----------------------------------------
    def join_weight_group(
        self, master_addr: str, master_port: int, rank: int, world_size: int, backend: str, timeout_s: float
    ) -> int:
        """Join (or re-join, after the pool changed) the learner's weight broadcast group."""
        if self.weight_group is not None:
            self.weight_group.close()
        self.weight_group = WeightGroup(master_addr, master_port, rank, world_size, backend, timeout_s)
        return rank

    def receive_weights(self, plan: list, version: int) -> str:
        """Receive one broadcast of the learner's weights (bucket plan from the learner); returns
        their checksum, like `load_weights`."""
        if self.weight_group is None:
            raise RuntimeError(
                "receive_weights before join_weight_group: the cluster must build the group first"
            )
        self.weight_group.receive(plan, into=self.policy.trainable_tensors())  # bucket by bucket, in place
        self.policy_version = version
        return self.policy.checksum()

    def rollout(self, groups: list[tuple[int, str]], iteration: int, preview: bool = False):
        """Roll out whole groups [(group id, prompt)]. Returns (images uint8 [B, H, W, 3],
        Trajectory, info) — call it with num_returns=3 so each lands as its own object."""
        start = time.perf_counter()
        prompts, columns, initial, noise = [], [], [], []
        g = self.cfg.group_size
        members = self.plan.members_per_group(g)
        for group_id, prompt in groups:
            a, b = group_seeds(self.run_seed, iteration, group_id, members)
            prompts += [prompt] * members
            columns += [self.plan.column_label(group_id, m, g) for m in range(members)]
            initial += a
            noise += b
        images, traj = generate(
            self.policy,
            prompts,
            columns,
            self.plan.at(iteration),
            initial,
            noise,
            self.policy_version,
            micro_batch=self.cfg.micro_batch,
            group_size=g,
            select=self.select,
        )
        seconds = time.perf_counter() - start
        self.images_done += len(images)
        self.seconds += seconds
        info = {
            "worker": self.index,
            "samples": len(images),
            "seconds": seconds,
            "policy_version": self.policy_version,
            "groups": [gid for gid, _ in groups],
        }
        if preview:  # the first rows of G samples, in batch order: prompt groups, or E-GRPO's branch columns
            info["preview_rows"] = min(len(images) // g, 4)
            info["preview_png"] = _png(images, cols=g, rows=info["preview_rows"])
        return images, traj, info

    def sample_ode(self, prompts: list[str], seeds: list[int], preview_cols: int = 0):
        """Deterministic ODE samples for evaluation: (images, info[, preview PNG of the first rows])."""
        images = sample_ode(
            self.policy,
            prompts,
            seeds,
            num_steps=self.cfg.num_steps,
            shift=self.plan_shift,
            micro_batch=self.cfg.micro_batch,
        )
        info = {"samples": len(images)}
        if preview_cols and len(images):
            cols = min(preview_cols, len(images))  # a worker holding less than one row still shows it
            info["preview_png"] = _png(images, cols=cols, rows=max(1, min(8, len(images) // cols)))
        return images, info


def _png(images: np.ndarray, cols: int, rows: int) -> bytes:
    buf = io.BytesIO()
    image_grid(images[: cols * rows], cols=cols, scale=3).save(buf, format="PNG")
    return buf.getvalue()
