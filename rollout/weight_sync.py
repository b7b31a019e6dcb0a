"""Weights from learner rank 0 to the rollout workers over a collective group (the GPU-cluster sync
path), and the checksum every sync is verified with.

The group is separate from the learner's DeepSpeed world: its own TCPStore, rank 0 is learner
rank 0, ranks 1..R are the rollout workers; NCCL on GPUs, gloo on CPU (tests). Weights travel
in buckets: each bucket is one flat tensor of one dtype, about `bucket_bytes` long, so a LoRA
state of a thousand small tensors is a handful of collective calls, and a full state never
needs a second full-size copy: the sender packs one bucket at a time from the live weights
(on their device; under ZeRO-3 gathered one bucket at a time), the receiver copies each bucket
into its own weights as it arrives, so each side holds at most one bucket extra. Sender and
receivers walk the same bucket plan:

    plan = plan_buckets(tensor_specs(state), bucket_bytes)   # on the sender, handed to receivers
    sender:    group.send(state, plan)            (or group.send_bucket(flat) per bucket)
    receiver:  group.receive(plan, into=params)   (copies into `params`; without `into`: a new dict)

Checksum (`state_checksum`, `Checksum`): per tensor, over the bit patterns u_i of its elements
read as integers (int16 for bf16 / fp16, int32 for fp32; as int32), the pair

    S = Σ u_i  (exact, int64),     W = Σ c_k·Σ_j [w_j·u_i mod 2^32]  mod 2^64    (i = k·2^22 + j)

with odd pseudo-random weights w_j = ((j + 1)·φ) | 1 and c_k = ((k + 1)·φ) | 1 (φ = 0x9E3779B97F4A7C15,
Fibonacci hashing), computed on the tensor's own device (two elementwise int32 ops and two sums
per element, in chunks of 2^22), then blake2b over every tensor's (name, shape, dtype, S, W) in
name order on the host (32 bytes a tensor). Integer sums are exact and order-free, so GPU and
CPU, any reduction order, agree bit for bit. Guarantee: a change of any *single* element changes
u_i by d with 0 < |d| < 2^32, so the exact sum S changes: always detected, not "with high
probability". A change of several elements goes unseen only if S is unchanged *and* the weighted
sum W collides (e.g. a swap of two elements keeps S but changes W) — unlike blake2b it is not a
cryptographic hash, and it need not be: it guards against lost, stale, misplaced or corrupted
buckets, not against an adversary.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import timedelta

import torch

DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}
DTYPES = {name: dtype for dtype, name in DTYPE_NAMES.items()}


@dataclass(frozen=True)
class TensorSpec:
    """What a receiver needs to rebuild one tensor: name, shape, dtype name."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * DTYPES[self.dtype].itemsize


def tensor_specs(state: dict[str, torch.Tensor]) -> list[TensorSpec]:
    return [TensorSpec(name, tuple(t.shape), DTYPE_NAMES[t.dtype]) for name, t in sorted(state.items())]


def plan_buckets(specs: list[TensorSpec], bucket_bytes: int) -> list[list[TensorSpec]]:
    """Tensors grouped by dtype (in name order within a dtype), cut into buckets of at most
    `bucket_bytes`; a tensor larger than that travels alone. Every tensor is in exactly one bucket."""
    if bucket_bytes <= 0:
        raise ValueError(f"bucket_bytes must be positive, got {bucket_bytes}")
    buckets: list[list[TensorSpec]] = []
    for dtype in sorted({s.dtype for s in specs}):
        current, size = [], 0
        for spec in (s for s in specs if s.dtype == dtype):
            if current and size + spec.nbytes > bucket_bytes:
                buckets.append(current)
                current, size = [], 0
            current.append(spec)
            size += spec.nbytes
        if current:
            buckets.append(current)
    return buckets


def pack(state: dict[str, torch.Tensor], bucket: list[TensorSpec]) -> torch.Tensor:
    """One flat tensor [Σ numel] holding the bucket's tensors back to back."""
    return torch.cat([state[s.name].detach().reshape(-1) for s in bucket])


def unpack(flat: torch.Tensor, bucket: list[TensorSpec]) -> dict[str, torch.Tensor]:
    """Inverse of `pack`: views into `flat`, one per spec."""
    out, offset = {}, 0
    for s in bucket:
        out[s.name] = flat[offset : offset + s.numel].view(s.shape)
        offset += s.numel
    if offset != flat.numel():
        raise ValueError(f"bucket of {flat.numel()} elements, specs describe {offset}")
    return out


_WORDS = {1: torch.uint8, 2: torch.int16, 4: torch.int32}  # element size -> its bit pattern
_PHI = 0x9E3779B97F4A7C15  # Fibonacci hashing's multiplier (odd)
_CHUNK = 1 << 22  # elements per step: int32 temporaries of 16 MiB
_WEIGHTS: dict[torch.device, torch.Tensor] = {}


def _signed(x: int, bits: int) -> int:
    x %= 2**bits
    return x - 2**bits if x >= 2 ** (bits - 1) else x


def _odd_weights(device: torch.device) -> torch.Tensor:
    """w_j = ((j + 1)·φ mod 2^32) | 1 for j < _CHUNK, int32 on `device` (made once per device)."""
    if device not in _WEIGHTS:
        j = torch.arange(1, _CHUNK + 1, dtype=torch.int64)
        _WEIGHTS[device] = (((j * _signed(_PHI, 64)) | 1) & 0xFFFFFFFF).to(torch.int32).to(device)
    return _WEIGHTS[device]


def tensor_digest(t: torch.Tensor) -> torch.Tensor:
    """(S, W) of one tensor (module docstring) as int64 [2] on the tensor's device (no host sync).
    S is the exact sum of the bit patterns; W sums the products w_i·u_i wrapped to int32, with
    w_i = c_k·w_j for element i = k·_CHUNK + j (c_k = ((k + 1)·φ) | 1): both odd."""
    words = t.detach().reshape(-1).view(_WORDS[t.element_size()])  # [n] bit patterns (no copy if contiguous)
    if t.device.type == "cpu":  # the same integers through numpy: its int32 kernels are ~8x torch's on CPU
        return torch.tensor(_digest_host(words.numpy()), dtype=torch.int64)
    return _digest_device(words)


def _digest_device(words: torch.Tensor) -> torch.Tensor:
    """tensor_digest in torch ops on the words' device (GPUs: a few memory-bound kernels)."""
    weights = _odd_weights(words.device)
    total = torch.zeros(2, dtype=torch.int64, device=words.device)
    for k, lo in enumerate(range(0, words.numel(), _CHUNK)):
        u = words[lo : lo + _CHUNK].to(torch.int32)  # [c] (a view for 4-byte elements)
        total[0] += u.sum()  # int32 summed in int64: exact
        total[1] += (u * weights[: u.numel()]).sum() * _signed(
            ((k + 1) * _PHI) | 1, 64
        )  # int64 wraps: mod 2^64
    return total


def _digest_host(words) -> tuple[int, int]:
    """tensor_digest of a host array of bit patterns, in numpy (identical integers)."""
    import numpy as np

    weights = _odd_weights(torch.device("cpu")).numpy()
    s = w = 0
    for k, lo in enumerate(range(0, words.size, _CHUNK)):
        u = words[lo : lo + _CHUNK].astype(np.int32)
        s += int(u.sum(dtype=np.int64))
        w += int((u * weights[: u.size]).sum(dtype=np.int64)) * (
            (((k + 1) * _PHI) | 1) % 2**64
        )  # int32 products wrap
    return _signed(s, 64), _signed(w, 64)


class Checksum:
    """Streaming `state_checksum`: update() tensor by tensor (any order, e.g. one bucket at a
    time), hexdigest() once at the end (the only device -> host copy: 16 bytes a tensor)."""

    def __init__(self):
        self.digests: dict[str, tuple[tuple[int, ...], torch.dtype, torch.Tensor]] = {}

    def update(self, name: str, t: torch.Tensor) -> None:
        self.digests[name] = (tuple(t.shape), t.dtype, tensor_digest(t))

    def hexdigest(self) -> str:
        names = sorted(self.digests)
        by_device: dict[torch.device, list[str]] = {}
        for k in names:
            by_device.setdefault(self.digests[k][2].device, []).append(k)
        values: dict[str, list[int]] = {}
        for keys in by_device.values():  # one device -> host copy per device
            values.update(zip(keys, torch.stack([self.digests[k][2] for k in keys]).tolist()))
        h = hashlib.blake2b(digest_size=16)
        for k in names:
            s, w = values[k]
            shape, dtype, _ = self.digests[k]
            h.update(f"{k}:{shape}:{dtype}:{s & (2**64 - 1):x}:{w & (2**64 - 1):x};".encode())
        return h.hexdigest()


def state_checksum(state: dict[str, torch.Tensor]) -> str:
    """Checksum of a weight state (module docstring): equal on every device iff the bits are equal,
    up to the stated guarantee; computed where the tensors live, without copying them."""
    c = Checksum()
    for name, t in state.items():
        c.update(name, t)
    return c.hexdigest()


@torch.no_grad()
def _copy_into(into: dict[str, torch.Tensor], flat: torch.Tensor, bucket: list[TensorSpec]) -> None:
    """Copy a received bucket into existing tensors (its views die here, so `flat` can be freed)."""
    for name, t in unpack(flat, bucket).items():
        into[name].copy_(t)


class WeightGroup:
    """A collective group of `world_size` processes for weight broadcasts (rank 0 sends).

    Every member constructs it at the same time (the TCPStore waits for all of them)."""

    def __init__(
        self,
        master_addr: str,
        master_port: int,
        rank: int,
        world_size: int,
        backend: str,
        timeout_s: float = 600,
    ):
        import torch.distributed as dist

        timeout = timedelta(seconds=timeout_s)
        self.rank, self.world_size, self.backend = rank, world_size, backend
        self.device = "cuda" if backend == "nccl" else "cpu"
        self.store = dist.TCPStore(master_addr, master_port, world_size, is_master=rank == 0, timeout=timeout)
        if backend == "gloo":
            self.pg = dist.ProcessGroupGloo(self.store, rank, world_size, timeout)
        elif backend == "nccl":
            options = dist.ProcessGroupNCCL.Options()
            options._timeout = timeout
            self.pg = dist.ProcessGroupNCCL(self.store, rank, world_size, options)
        else:
            raise ValueError(f"weight group backend {backend!r}: use 'nccl' (GPUs) or 'gloo' (CPU)")

    def _broadcast(self, flat: torch.Tensor) -> None:
        self.pg.broadcast(flat, 0).wait()

    def send_bucket(self, flat: torch.Tensor) -> None:
        """Rank 0: broadcast one packed bucket (a flat tensor on this group's device)."""
        self._broadcast(flat.to(self.device).contiguous())

    def send(self, state: dict[str, torch.Tensor], plan: list[list[TensorSpec]]) -> None:
        """Rank 0: broadcast `state` bucket by bucket (one bucket packed at a time)."""
        for bucket in plan:
            self.send_bucket(pack(state, bucket))

    def receive(
        self, plan: list[list[TensorSpec]], into: dict[str, torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        """Ranks ≥ 1: the broadcast state. With `into` (name -> tensor, e.g. the policy's own
        weights) each bucket is copied into those tensors as it arrives and freed, so the extra
        memory is one bucket; returns `into`. Without it, a new dict of tensors on this group's device."""
        state: dict[str, torch.Tensor] = {} if into is None else into
        missing = sorted({s.name for b in plan for s in b} - set(state)) if into is not None else []
        if missing:
            raise KeyError(f"weight broadcast carries tensors this worker lacks: {missing[:3]}")
        for bucket in plan:
            flat = torch.empty(
                sum(s.numel for s in bucket), dtype=DTYPES[bucket[0].dtype], device=self.device
            )
            self._broadcast(flat)
            if into is None:
                state.update(unpack(flat, bucket))
            else:
                _copy_into(into, flat, bucket)
                del flat  # before the next bucket's buffer: one bucket at a time
        return state

    def close(self) -> None:
        shutdown = getattr(self.pg, "shutdown", None)
        if self.backend == "nccl" and shutdown is not None:
            shutdown()
        self.pg = None
        self.store = None
