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
from torch.utils._pytree import tree_flatten, tree_map

from learner.config import LearnerConfig
from learner.worker import LearnerWorker

aten = torch.ops.aten
META = torch.device("meta")


def _is_meta(x) -> bool:
    return isinstance(x, torch.Tensor) and x.device.type == "meta"


class MetaHost(TorchDispatchMode):
    """Runs code whose model lives on the meta device end to end (module docstring).

    Every op runs its meta kernel, device checks included. Meta tensors that come from the host
    (inputs: token ids, image grids, chunk ids) or from small factories (arange, zeros) keep a
    host twin, and ops whose inputs all have twins are replayed on them, so control flow and
    data-dependent shapes that follow from the inputs are exact (HPSv3 needs its image grid to
    size its vision tokens). Anything computed from the weights has no twin: its host reads
    (.cpu(), .item(), bool(), .tolist()) are zeros, and a data-dependent shape of it is empty."""

    TWIN_LIMIT = 1 << 20  # elements: larger tensors get no host twin

    def __init__(self):
        super().__init__()
        from torch.utils.weak import WeakTensorKeyDictionary

        self.twins = WeakTensorKeyDictionary()  # meta tensor -> its CPU twin
        self.host_reads = 0  # device -> host crossings answered with zeros (no twin)

    def __enter__(self):
        # torch.tensor / as_tensor(data, device=meta) copy below the dispatcher: route them through
        # a CPU tensor and .to(), so the result keeps its values as a twin
        self._factories = torch.tensor, torch.as_tensor
        for name, make in zip(("tensor", "as_tensor"), self._factories):
            setattr(torch, name, self._via_host(make))
        return super().__enter__()

    def __exit__(self, *exc):
        torch.tensor, torch.as_tensor = self._factories
        return super().__exit__(*exc)

    @staticmethod
    def _via_host(make):
        def made(data, *args, device=None, **kwargs):
            if device is not None and torch.device(device).type == "meta":
                return make(data, *args, **kwargs).to(META)
            return make(data, *args, device=device, **kwargs)
        return made

    def _host(self, t: torch.Tensor):
        return self.twins.get(t)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        src = args[0] if args else None
        read = self._host_read(func, src, args, kwargs)
        if read is not NotImplemented:
            return read
        flat, _ = tree_flatten((args, kwargs))
        metas = [t for t in flat if _is_meta(t)]
        twinned = bool(metas) and all(self._host(t) is not None for t in metas)
        try:
            out = func(*args, **kwargs)
        except (NotImplementedError, RuntimeError):  # a data-dependent shape: known from the twins, else empty
            host_operands = [t for t in flat if isinstance(t, torch.Tensor) and not _is_meta(t) and t.ndim > 0]
            if host_operands:  # a real device mismatch (or any other error): as the device would raise it
                raise
            if twinned:
                return self._to_meta(self._replay(func, args, kwargs))
            return self._shape_only_result(func, src, args)
        if func is aten._to_copy.default and isinstance(src, torch.Tensor) and src.device.type == "cpu" \
                and _is_meta(out):  # host -> device: the twin is the host tensor
            self._twin(out, src.to(dtype=out.dtype, copy=True))
        elif (twinned or (not metas and any(_is_meta(t) for t in tree_flatten(out)[0]))) and \
                sum(t.numel() for t in tree_flatten(out)[0] if _is_meta(t)) <= self.TWIN_LIMIT:  # on twins, factories
            try:
                host = self._replay(func, args, kwargs)
            except Exception:  # a host replay that cannot run: no twin
                return out
            for o, h in zip(tree_flatten(out)[0], tree_flatten(host)[0]):
                if _is_meta(o) and isinstance(h, torch.Tensor):
                    self._twin(o, h)
        else:
            for t in metas:  # an op mixing twinned and untwinned operands: in-place results lose their twin
                if func._schema.is_mutable and t in self.twins:
                    del self.twins[t]
        return out

    def _host_read(self, func, src, args, kwargs):
        """Values of a meta tensor on the host: its twin, else zeros; NotImplemented if not a read."""
        if func is aten._to_copy.default and _is_meta(src) and torch.device(kwargs.get("device") or META).type == "cpu":
            twin = self._host(src)
            self.host_reads += twin is None
            dtype = kwargs.get("dtype") or src.dtype
            return twin.to(dtype, copy=True) if twin is not None else torch.zeros(src.shape, dtype=dtype)
        if func is aten.copy_.default and not _is_meta(src) and _is_meta(args[1]):  # host tensor <- meta
            twin = self._host(args[1])
            self.host_reads += twin is None
            return src.copy_(twin) if twin is not None else src.zero_()
        if func is aten._local_scalar_dense.default and _is_meta(src):
            twin = self._host(src)
            if twin is not None:
                return twin.item()
            self.host_reads += 1
            return False if src.dtype == torch.bool else 0.0 if src.dtype.is_floating_point else 0
        return NotImplemented

    def _replay(self, func, args, kwargs):
        """`func` on the host twins (and on the CPU where it was asked for the meta device)."""
        def host(x):
            if _is_meta(x):
                return self._host(x)
            return torch.device("cpu") if isinstance(x, torch.device) and x.type == "meta" else x
        hargs, hkwargs = tree_map(host, (args, kwargs))
        return func(*hargs, **hkwargs)

    def _twin(self, meta: torch.Tensor, host: torch.Tensor) -> None:
        if host.numel() <= self.TWIN_LIMIT and tuple(host.shape) == tuple(meta.shape):
            self.twins[meta] = host

    def _to_meta(self, host):
        def move(h):
            if not isinstance(h, torch.Tensor):
                return h
            m = torch.empty(h.shape, dtype=h.dtype, device=META)
            self._twin(m, h)
            return m
        return tree_map(move, host)

    def _shape_only_result(self, func, src, args):
        """A data-dependent op on untwinned values: its shape from a twinned mask, else nothing selected."""
        if func is aten.nonzero.default:
            return torch.empty((0, src.ndim), dtype=torch.long, device=META)
        if func is aten.index.Tensor and len(args[1]) == 1 and args[1][0] is not None and args[1][0].dtype == torch.bool:
            mask = self._host(args[1][0])  # x[mask]: as many rows as the mask selects
            rows = int(mask.sum()) if mask is not None else 0
            return torch.empty((rows, *src.shape[args[1][0].ndim:]), dtype=src.dtype, device=META)
        raise NotImplementedError(f"{func} needs values the meta device does not have")


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
