"""DeepSpeed plumbing for the learner: process group, ZeRO engine, safe checkpoints.

The device is chosen in the actor (`actor_device`); on CPU: `DS_ACCELERATOR=cpu` and the gloo
backend; on GPUs: nccl, plus a gloo group of the same ranks for host-side ints (`host_group`).
The optimizer is torch's AdamW (`torch_adam`) so no fused CUDA op has to be compiled.
Checkpoints are DeepSpeed's own layout, but read back with `torch.load(weights_only=True)`
only (DeepSpeed's default loader unpickles arbitrary objects); the few DeepSpeed classes its
state holds are allow-listed explicitly.
"""

from __future__ import annotations

import os
import socket
import warnings
from datetime import timedelta

import torch

from learner.config import LearnerConfig

BUCKET_ELEMENTS = int(
    5e7
)  # elements per gradient-reduce / all-gather / ZeRO-3 prefetch bucket (100 MB in bf16)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def node_ip() -> str:
    try:
        import ray

        return ray.util.get_node_ip_address()
    except Exception:  # outside Ray (unit tests): loopback
        return "127.0.0.1"


def clear_stale_build_locks(max_age_s: float = 600) -> None:
    """A process killed while compiling a DeepSpeed op leaves torch's build `lock` file
    behind, and every later build waits on it forever; remove locks older than max_age_s."""
    import glob
    import time

    root = os.environ.get("TORCH_EXTENSIONS_DIR", os.path.expanduser("~/.cache/torch_extensions"))
    for lock in glob.glob(os.path.join(root, "*", "*", "lock")):
        try:
            if time.time() - os.path.getmtime(lock) > max_age_s:
                os.remove(lock)
        except OSError:
            pass


def actor_device(num_gpus: float) -> str:
    """This process's device, decided inside the actor from what Ray gave it: with a GPU
    (Ray sets CUDA_VISIBLE_DEVICES to it, so it is cuda:0 here) 'cuda', else 'cpu'."""
    if num_gpus <= 0:
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    warnings.warn(
        f"learner.num_gpus is {num_gpus} but this actor sees no CUDA device (a CPU-only torch, or "
        "CUDA_VISIBLE_DEVICES empty); it runs on the CPU",
        stacklevel=2,
    )
    return "cpu"


def init_distributed(rank: int, world_size: int, master_addr: str, master_port: int, backend: str) -> None:
    """The learner ranks' default process group: `backend` nccl for CUDA policies, gloo for CPU."""
    import deepspeed

    clear_stale_build_locks()
    os.environ.update(
        MASTER_ADDR=master_addr,
        MASTER_PORT=str(master_port),
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK="0",
    )
    deepspeed.init_distributed(
        dist_backend=backend,
        auto_mpi_discovery=False,
        init_method=f"tcp://{master_addr}:{master_port}",
        rank=rank,
        world_size=world_size,
        timeout=timedelta(minutes=30),
    )


def host_group(world_size: int):
    """A gloo group of all learner ranks for host-side ints (pass counts, chunk counts): CPU
    tensors never enter the default group, which under NCCL refuses them. None for one rank.
    Collective: every rank calls it at the same point."""
    import torch.distributed as dist

    if world_size == 1 or not dist.is_initialized():
        return None
    return dist.new_group(backend="gloo")


def check_engine_device(engine, device: torch.device) -> None:
    """DeepSpeed moves the module to its accelerator's device: it must be the policy's."""
    got = getattr(engine, "device", None)
    if got is not None and torch.device(got).type != torch.device(device).type:
        raise RuntimeError(
            f"DeepSpeed put the transformer on {got} but the policy is on {device}; the learner's "
            f"device and DS_ACCELERATOR must agree (set learner.num_gpus to match the actor's GPUs)"
        )


def deepspeed_config(cfg: LearnerConfig, bf16: bool) -> dict:
    """ZeRO stage, optional CPU offload, bucket sizes. Buckets are explicit: DeepSpeed's default
    reduce / prefetch buckets of 5·10^8 elements would add GBs of buffers on a 12 B model."""
    zero: dict = {
        "stage": cfg.zero_stage,
        "overlap_comm": False,
        "contiguous_gradients": True,
        "reduce_bucket_size": BUCKET_ELEMENTS,
        "allgather_bucket_size": BUCKET_ELEMENTS,
    }
    if cfg.zero_stage == 3:
        # memory_efficient_linear off: ZeRO-3 would swap F.linear for matmul + a separate bias add,
        # which rounds differently in bf16 than the rollout's F.linear (measured: first-minibatch
        # ratios 1 ± 6e-5, against clip_range 1e-4); with it off they agree exactly
        zero.update(
            stage3_prefetch_bucket_size=BUCKET_ELEMENTS,
            stage3_param_persistence_threshold=1e5,
            stage3_max_live_parameters=int(1e9),
            stage3_max_reuse_distance=int(1e9),
            memory_efficient_linear=False,
        )
    if (
        cfg.offload_optimizer
    ):  # ZeRO-Offload: fp32 master weights + Adam moments in CPU memory, step on the CPU
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": cfg.num_gpus > 0}
    if cfg.offload_params:  # ZeRO-3 only (validated): parameters live in CPU memory between uses
        zero["offload_param"] = {"device": "cpu", "pin_memory": cfg.num_gpus > 0}
    return {
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": cfg.max_grad_norm,
        "optimizer": {
            "type": "AdamW",
            "params": {
                "lr": cfg.lr,
                "betas": list(cfg.betas),
                "eps": 1e-8,
                "weight_decay": cfg.weight_decay,
                "torch_adam": True,
            },
        },
        "zero_optimization": zero,
        "zero_force_ds_cpu_optimizer": False,  # torch's AdamW also under offload (no C++ op to build)
        "bf16": {"enabled": bf16},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def build_engine(module: torch.nn.Module, cfg: LearnerConfig, bf16: bool):
    import deepspeed

    params = [p for p in module.parameters() if p.requires_grad]
    engine, *_ = deepspeed.initialize(
        model=module, model_parameters=params, config=deepspeed_config(cfg, bf16)
    )
    engine.checkpoint_engine = _weights_only_engine(engine)
    return engine


def _weights_only_engine(engine):
    from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import TorchCheckpointEngine

    class WeightsOnlyCheckpointEngine(TorchCheckpointEngine):
        def save(self, state_dict, path: str):
            super().save(enum_values(state_dict), path)

        def load(self, path: str, map_location=None):
            with torch.serialization.safe_globals(_deepspeed_safe_globals()):
                return torch.load(path, map_location=map_location, weights_only=True)

    return WeightsOnlyCheckpointEngine(engine._config)


def enum_values(obj):
    """`obj` with every Enum member (DeepSpeed's ZeroStageEnum) replaced by its value. Python
    3.11.0-3.11.4 (Debian 12's python is 3.11.2) pickle a member as `getattr(cls, name)`,
    which a weights_only load refuses; a plain int loads anywhere, and DeepSpeed reads it back
    as a number. Dicts, lists and tuples are rebuilt, tensors and everything else kept."""
    import enum
    from collections import OrderedDict

    if isinstance(obj, enum.Enum):
        return obj.value
    if type(obj) in (dict, OrderedDict):
        return type(obj)((k, enum_values(v)) for k, v in obj.items())
    if type(obj) in (list, tuple):
        return type(obj)(enum_values(v) for v in obj)
    return obj


def _deepspeed_safe_globals() -> list:
    """The non-tensor classes DeepSpeed puts in a ZeRO checkpoint (nothing executable)."""
    from deepspeed.runtime.fp16.loss_scaler import LossScaler, DynamicLossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]
