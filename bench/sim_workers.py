"""Simulated rollout, reward and learner actors for bench/sim_scale.py.

They answer the same actor calls as rollout/worker.py, reward/worker.py and learner/worker.py
(the calls orchestrator/cluster.py, rollouts.py and weights.py make), but their model work is a
calibrated wait, and what they put in the object store has FLUX's size: per image a
1024² RGB uint8 image (3 MiB) and a trajectory of 16 transitions of 4096 × 64 latents (bf16
by default, as the issue specifies; `latent_bytes=4` for the float32 latents the real
`Trajectory` stores). Payloads are numpy, not torch: a bare Ray actor costs ~49 MiB PSS and
one that imports torch ~200 MiB, so only torch-free actors fit 64+ on this machine. The
driver never touches a payload (it holds refs only), so this changes nothing on its side;
the CPU cost of pickling a real torch `Trajectory` is measured separately by sim_scale.py.

Every call is logged as (method, start, end, bytes) in wall-clock time, so the bench can
tell the time the workers spent waiting from the time the driver and Ray spent around them.
Only numpy and ray are imported here: each of the 64+ actor processes imports this module.
"""

from __future__ import annotations

import os
import time
import zlib
from dataclasses import dataclass

import numpy as np
import ray


@dataclass(frozen=True)
class SimSpec:
    rollout_s_per_group: float = 0.12  # calibrated wait of one group's rollout on one worker
    reward_s_per_image: float = 0.0005  # one scorer, one image
    learner_s: float = 0.9  # one update (the learner group scales with the rollout pool: fixed)
    slow_worker: int | None = None  # rollout worker index that is `slow_factor`× slower
    slow_factor: float = 2.0
    latent_tokens: int = 4096  # FLUX 1024²: (1024 / 16)² tokens
    latent_channels: int = 64
    transitions: int = 16
    latent_bytes: int = 2  # bf16
    image_side: int = 1024
    weight_bytes: int = 4 * 2**20  # the published trainable weights (one object, read by every worker)

    def image_bytes(self) -> int:
        return self.image_side * self.image_side * 3

    def trajectory_bytes(self) -> int:
        return self.transitions * self.latent_tokens * self.latent_channels * self.latent_bytes


def _checksum(state: dict) -> str:
    return format(zlib.crc32(b"".join(v.tobytes() for _, v in sorted(state.items()))), "08x")


def _initial_state(spec: SimSpec) -> dict:
    return {"w": np.zeros(spec.weight_bytes // 4, dtype=np.float32)}


class _Logged:
    """Keeps (method, start, end, bytes) of each call; `calls()` hands them over."""

    def _init_log(self) -> None:
        self.log: list[tuple[str, float, float, int]] = []
        self.images_done, self.seconds = 0, 0.0

    def _record(self, method: str, start: float, nbytes: int = 0) -> None:
        end = time.time()
        self.log.append((method, start, end, nbytes))
        self.seconds += end - start

    def calls(self) -> list:
        return self.log

    def pid(self) -> int:
        return os.getpid()


class SimRolloutWorker(_Logged):
    """The RolloutWorker calls: rollout, load_weights, checksum, probe, export_weights, info."""

    def __init__(self, spec: SimSpec, group_size: int, index: int):
        self.group_size = group_size
        self.reset(index, spec)

    def reset(self, index: int, spec: SimSpec) -> int:
        """Back to a fresh worker holding the base weights (the bench reuses actors across runs)."""
        self.spec, self.index, self.policy_version = spec, index, 0
        self.weights_checksum = _checksum(_initial_state(self.spec))
        self._init_log()
        return index

    def info(self) -> dict:
        return {
            "pid": os.getpid(),
            "node": os.uname().nodename,
            "policy_version": self.policy_version,
            "images": self.images_done,
            "seconds": self.seconds,
            "index": self.index,
        }

    def checksum(self) -> str:
        return self.weights_checksum

    def probe(self, prompt: str) -> str:
        """The sync guard's probe (orchestrator/guards.py): what the model computes follows the
        weights it holds, so the digest of its output is the weights' checksum here."""
        return self.weights_checksum

    def load_weights(self, state: dict, version: int) -> str:
        start = time.time()
        self.weights_checksum, self.policy_version = _checksum(state), version
        self._record("load_weights", start, sum(v.nbytes for v in state.values()))
        return self.weights_checksum

    def export_weights(self) -> dict:
        raise NotImplementedError("the simulated pool syncs through the object store only")

    def rollout(self, groups: list, iteration: int, preview: bool = False):
        start = time.time()
        s = self.spec
        slow = s.slow_factor if self.index == s.slow_worker else 1.0
        time.sleep(s.rollout_s_per_group * len(groups) * slow)
        b = len(groups) * self.group_size
        images = np.empty((b, s.image_side, s.image_side, 3), dtype=np.uint8)
        dtype = {2: np.uint16, 4: np.float32}[s.latent_bytes]  # uint16 holds bf16 bits: same bytes
        trajectory = {
            "latents": np.empty((b, s.transitions, s.latent_tokens, s.latent_channels), dtype=dtype),
            "log_probs": np.zeros((b, s.transitions), dtype=np.float32),
            "columns": np.repeat([g for g, _ in groups], self.group_size),
            "policy_version": self.policy_version,
        }
        self.images_done += b
        self._record("rollout", start, images.nbytes + trajectory["latents"].nbytes)
        info = {
            "worker": self.index,
            "samples": b,
            "seconds": time.time() - start,
            "policy_version": self.policy_version,
            "groups": [g for g, _ in groups],
        }
        return images, trajectory, info


class SimRewardWorker(_Logged):
    """The RewardWorker calls: score_rows (its share of a batch), score, info. Rewards are seeded
    noise, so groups have spread."""

    def __init__(self, spec: SimSpec, name: str):
        self.spec, self.name = spec, name
        self._init_log()
        self.rng = np.random.default_rng(zlib.crc32(name.encode()))

    def info(self) -> dict:
        return {
            "pid": os.getpid(),
            "node": os.uname().nodename,
            "scorer": self.name,
            "images": self.images_done,
            "seconds": self.seconds,
        }

    def score_rows(self, images: np.ndarray, prompts: list, start: int) -> np.ndarray:
        return self.score(images[start : start + len(prompts)], prompts)

    def score(self, images: np.ndarray, prompts: list) -> np.ndarray:
        start = time.time()
        time.sleep(self.spec.reward_s_per_image * len(images))
        self.images_done += len(images)
        self._record("score", start, images.nbytes)
        return self.rng.random(len(images)).astype(np.float32)


class SimLearnerWorker(_Logged):
    """The LearnerWorker calls: rendezvous, setup, update, publish, save, load, info."""

    def __init__(self, spec: SimSpec, rank: int, world_size: int):
        self.spec, self.rank, self.world_size = spec, rank, world_size
        self._init_log()
        self.state = _initial_state(spec)
        self.updates = 0

    def rendezvous(self) -> tuple[str, int]:
        return "127.0.0.1", 0

    def setup(self, master_addr: str, master_port: int) -> dict:
        return {"rank": self.rank, "pid": os.getpid()}

    def update(
        self, batch_refs: list, batch_sizes: list, samples: list, advantages: list, minibatches: list
    ) -> dict:
        """Fetch this rank's batches (as the real rank does: only those its shard lives in),
        wait, change the weights."""
        start = time.time()
        n = len(samples)
        mine = samples[self.rank * n // self.world_size : (self.rank + 1) * n // self.world_size]
        offsets = np.cumsum([0, *batch_sizes])
        wanted = sorted({int(np.searchsorted(offsets, g, side="right")) - 1 for g in mine})
        fetched = ray.get([batch_refs[b] for b in wanted])
        nbytes = sum(t["latents"].nbytes for t in fetched)
        fetch_s = time.time() - start
        del fetched
        time.sleep(self.spec.learner_s)
        self.updates += 1
        self.state["w"][self.updates % len(self.state["w"])] += 1.0  # new weights: a new checksum
        self._record("update", start, nbytes)
        stats = dict.fromkeys(
            ("loss", "clip_fraction", "ratio_mean", "approx_kl", "kl", "ratio_dev_later"), 0.0
        )
        chunks = max(
            1, len(mine)
        )  # the stats LearnerWorker.update reports (learner/worker.py), neutral values
        return {
            **stats,
            "ratio_mean_first": 1.0,
            "ratio_min": 1.0,
            "ratio_max": 1.0,
            "grad_norm": 0.0,
            "chunks": chunks,
            "first_chunks": chunks,
            "later_chunks": 0,
            "optimizer_steps": len(minibatches),
            "nonfinite_loss": 0,
            "nonfinite_grad": 0,
            "learner_s": time.time() - start,
            "learner_fetch_s": fetch_s,
        }

    def publish(self):
        start = time.time()
        state = dict(self.state) if self.rank == 0 else None
        checksum = _checksum(state) if state is not None else None
        self._record("publish", start)
        return state, checksum

    def save(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def load(self, path: str) -> None:
        pass

    def info(self) -> dict:
        return {
            "pid": os.getpid(),
            "node": os.uname().nodename,
            "rank": self.rank,
            "updates": self.updates,
            "images": 0,
            "seconds": self.seconds,
        }
