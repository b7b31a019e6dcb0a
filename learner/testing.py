"""Running the GPU code path on a machine without a GPU (tests only).

A CUDA run fails when two tensors of one op sit on different devices, or when a collective
gets a tensor on a device its process group has no backend for. Both are checked here
without a GPU:

    meta device   the policy is put on PyTorch's `meta` device: every op runs its meta kernel,
                  which refuses a CPU operand exactly as CUDA does ("Tensor on device cpu is not
                  on the expected device meta!"). Meta tensors have no values, so `MetaHost`
                  answers the explicit device -> host crossings (.cpu(), .item(), bool(),
                  .tolist(), data-dependent shapes) with zeros: the code runs end to end and
                  every placement and shape is checked, none of the numbers are (CPU tests do that).
    'meta:gloo'   a default process group that maps only the meta device to a backend, as NCCL
                  maps only CUDA: a CPU tensor in a collective fails as under NCCL ("No backend
                  type associated with device type cpu"); meta tensors pass (meta kernels).

`PlainEngine` stands in for DeepSpeed, which cannot run on the meta device, and `MetaRank` is
one learner rank set up that way (a Ray actor in tests/learner/test_device_discipline.py).
"""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from learner.config import LearnerConfig
from learner.worker import LearnerWorker

aten = torch.ops.aten
META = torch.device("meta")


def _is_meta(x) -> bool:
    return isinstance(x, torch.Tensor) and x.device.type == "meta"


class MetaHost(TorchDispatchMode):
    """Meta tensors' values, wherever the host asks for them, are zeros (module docstring);
    every other op runs unchanged, device checks included."""

    def __init__(self):
        super().__init__()
        self.host_reads = 0  # device -> host crossings answered with zeros

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        src = args[0] if args else None
        if func is aten._to_copy.default and _is_meta(src) and torch.device(kwargs.get("device") or META).type == "cpu":
            self.host_reads += 1
            return torch.zeros(src.shape, dtype=kwargs.get("dtype") or src.dtype)
        if func is aten.copy_.default and not _is_meta(src) and _is_meta(args[1]):  # host tensor <- meta
            self.host_reads += 1
            return src.zero_()
        if func is aten._local_scalar_dense.default and _is_meta(src):
            self.host_reads += 1
            return False if src.dtype == torch.bool else 0 if not src.dtype.is_floating_point else 0.0
        if func is aten.nonzero.default and _is_meta(src):  # data-dependent shape: no element selected
            return torch.empty((0, src.ndim), dtype=torch.long, device=META)
        if func is aten.index.Tensor and _is_meta(src) and len(args[1]) == 1 and _is_meta(args[1][0]) \
                and args[1][0].dtype == torch.bool:  # x[mask]: as above, no element selected
            return torch.empty((0, *src.shape[args[1][0].ndim:]), dtype=src.dtype, device=META)
        return func(*args, **kwargs)


class PlainEngine(torch.nn.Module):
    """The part of a DeepSpeed engine the learner uses, in plain torch, for a module on a device
    DeepSpeed cannot run on here. Gradients are averaged over the default process group before
    the step, as ZeRO's reduce-scatter does, so they must live on the group's device."""

    def __init__(self, module: torch.nn.Module, cfg: LearnerConfig, bf16: bool = False):
        super().__init__()
        self.module = module
        self.device = next(module.parameters()).device
        self.params = [p for p in module.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.lr, betas=cfg.betas, foreach=False)
        self.backwards: list[tuple[str, tuple]] = []  # (device, shape) of every loss backpropagated
        self.steps = 0
        self.grad_devices: set[str] = set()

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def set_gradient_accumulation_boundary(self, boundary: bool) -> None:
        pass

    def backward(self, loss: torch.Tensor) -> None:
        self.backwards.append((str(loss.device), tuple(loss.shape)))
        loss.backward()

    def step(self) -> None:
        import torch.distributed as dist

        grads = [p.grad for p in self.params if p.grad is not None]
        self.grad_devices |= {str(g.device) for g in grads}
        if dist.is_initialized() and dist.get_world_size() > 1:
            for g in grads:
                dist.all_reduce(g)
                g /= dist.get_world_size()
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.steps += 1

    def report(self) -> dict:
        return {"backwards": list(self.backwards), "steps": self.steps, "grad_devices": sorted(self.grad_devices),
                "param_devices": sorted({str(p.device) for p in self.module.parameters()})}


class MetaRank:
    """One learner rank as on a GPU cluster, on the meta device: default process group
    'meta:gloo', PlainEngine for DeepSpeed, MetaHost around every call. `factory(device=...)`
    builds the policy; it is asked for the meta device whatever the rank picks."""

    def __init__(self, factory, cfg: LearnerConfig, rank: int, world_size: int, master_addr: str, master_port: int):
        import torch.distributed as dist

        import learner.worker

        dist.init_process_group("meta:gloo", init_method=f"tcp://{master_addr}:{master_port}", rank=rank,
                                world_size=world_size)
        learner.worker.build_engine = PlainEngine  # what LearnerWorker.setup builds its engine with
        self.worker = LearnerWorker(lambda device=None: factory(device="meta"), cfg, rank, world_size)
        self.worker.setup(master_addr, master_port)  # the group exists: setup adds what it needs

    def update(self, *args) -> tuple[dict, dict]:
        with MetaHost():
            stats = self.worker.update(*args)
        return stats, self.worker.engine.report()

    def publish(self):
        with MetaHost():
            state, checksum = self.worker.publish()
        return (None if state is None else {k: (tuple(v.shape), str(v.device)) for k, v in state.items()}), checksum
