"""The learner's trainable weights leaving the engine: object-store copies (`publish`), the
bucketed broadcast to the rollout workers, and checkpoints (mixed into LearnerWorker).

Nothing here copies the whole model at once: weights are read one bucket at a time, straight
from the live parameters on the policy's device (under ZeRO-3 gathered for the bucket and
released after it), and the integrity checksum is computed there, before any host copy. The
broadcast sends packed buckets with no CPU copy at all.
"""

from __future__ import annotations

import os

from rollout.weight_sync import DTYPE_NAMES, Checksum, TensorSpec, WeightGroup, pack, plan_buckets

PUBLISH_BUCKET_BYTES = 256 << 20  # ZeRO-3 gathers this much at a time to publish / save


class WeightPublisher:
    """Weights and checkpoints of one learner rank. Needs `engine`, `policy`, `cfg`, `rank` and
    `weight_group` on the instance (LearnerWorker sets them)."""

    def trainable_specs(self) -> list[TensorSpec]:
        """Name, full shape and dtype of every trainable weight, in name order (ZeRO-3 keeps the
        full shape in `ds_shape`; its parameters hold only their partition)."""
        params = dict(self.engine.module.named_parameters())
        return [
            TensorSpec(
                k, tuple(getattr(params[k], "ds_shape", params[k].shape)), DTYPE_NAMES[params[k].dtype]
            )
            for k in sorted(self.policy.trainable_names)
        ]

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

    def join_weight_group(
        self,
        master_addr: str,
        master_port: int,
        world_size: int,
        backend: str,
        timeout_s: float,
        bucket_bytes: int,
    ) -> list | None:
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
        self.engine.save_checkpoint(
            os.path.join(path, "deepspeed"), tag="state", save_latest=False, exclude_frozen_parameters=True
        )
        state, _ = self.publish()
        if state is not None:
            save_file({k: v.contiguous() for k, v in state.items()}, os.path.join(path, "policy.safetensors"))

    def load(self, path: str) -> None:
        has_frozen = any(not p.requires_grad for p in self.engine.module.parameters())  # saved without them
        load_path, _ = self.engine.load_checkpoint(
            os.path.join(path, "deepspeed"), tag="state", load_module_strict=not has_frozen
        )
        if load_path is None:
            raise FileNotFoundError(f"no DeepSpeed state in {path}/deepspeed")
