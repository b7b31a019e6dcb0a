"""Weights from learner rank 0 to the rollout workers over a collective group (the GPU-cluster sync path).

The group is separate from the learner's DeepSpeed world: its own TCPStore, rank 0 is learner
rank 0, ranks 1..R are the rollout workers; NCCL on GPUs, gloo on CPU (tests). Weights travel
in buckets: each bucket is one flat tensor of one dtype, about `bucket_bytes` long, so a LoRA
state of a thousand small tensors is a handful of collective calls, and a full state never
needs a second full-size copy. Sender and receivers walk the same bucket plan:

    plan = plan_buckets(tensor_specs(state), bucket_bytes)   # on the sender, handed to receivers
    sender:    group.send(state, plan)
    receiver:  state = group.receive(plan)
"""

from __future__ import annotations

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
        out[s.name] = flat[offset:offset + s.numel].view(s.shape)
        offset += s.numel
    if offset != flat.numel():
        raise ValueError(f"bucket of {flat.numel()} elements, specs describe {offset}")
    return out


class WeightGroup:
    """A collective group of `world_size` processes for weight broadcasts (rank 0 sends).

    Every member constructs it at the same time (the TCPStore waits for all of them)."""

    def __init__(self, master_addr: str, master_port: int, rank: int, world_size: int, backend: str,
                 timeout_s: float = 600):
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

    def send(self, state: dict[str, torch.Tensor], plan: list[list[TensorSpec]]) -> None:
        """Rank 0: broadcast `state` bucket by bucket."""
        for bucket in plan:
            self._broadcast(pack(state, bucket).to(self.device).contiguous())

    def receive(self, plan: list[list[TensorSpec]]) -> dict[str, torch.Tensor]:
        """Ranks ≥ 1: the broadcast state, on this group's device."""
        state: dict[str, torch.Tensor] = {}
        for bucket in plan:
            flat = torch.empty(sum(s.numel for s in bucket), dtype=DTYPES[bucket[0].dtype], device=self.device)
            self._broadcast(flat)
            state.update(unpack(flat, bucket))
        return state

    def close(self) -> None:
        shutdown = getattr(self.pg, "shutdown", None)
        if self.backend == "nccl" and shutdown is not None:
            shutdown()
        self.pg = None
        self.store = None
