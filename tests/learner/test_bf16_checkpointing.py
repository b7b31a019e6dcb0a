"""bf16, gradient checkpointing and LoRA in the learner: the log-probs a bf16 rollout stored and
the ones the learner recomputes (DeepSpeed bf16, checkpointed transformer, other micro-batch
sizes) must agree far inside clip_range, or the first ratio is not 1 and clipping starts from
noise. The step math is float32 (rollout.sde); what bf16 changes is the transformer's output,
and that depends on the batch it ran in."""

import functools
import os

import pytest
import torch

from learner.config import ChunkConfig, LearnerConfig
from learner.engine import free_port
from learner.schedule import pack_units, sample_units
from learner.worker import LearnerWorker
from rollout.config import ModelConfig
from rollout.plan import sde_plan
from rollout.policy import policy_from_config
from rollout.sampler import generate

pytestmark = pytest.mark.slow
PROMPTS = [f"a {c} {s} at the center" for c in ("red", "blue") for s in ("circle", "square")] * 2


def test_bf16_rollout_and_checkpointed_learner_log_probs_agree_across_micro_batches(flux_dir, capsys):
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    model = ModelConfig(
        path=str(flux_dir), resolution=32, dtype="bfloat16", gradient_checkpointing=True, lora={"rank": 4}
    )
    factory = functools.partial(policy_from_config, model)
    cfg = LearnerConfig(
        micro_batch=3, clip_range=1e-4, lr=1e-6, chunks=ChunkConfig(mode="step"), zero_stage=3
    )
    worker = LearnerWorker(factory, cfg, 0, 1)
    worker.setup("127.0.0.1", free_port())
    assert worker.policy.module.is_gradient_checkpointing and worker.policy.dtype == torch.bfloat16
    plan = sde_plan(4, noise_level=0.7, sde_kind="flow", train_last=True)
    n = len(PROMPTS)  # 8 samples of 64 tokens × 16 channels
    worst = {}
    for rollout_micro in (1, 8):  # rollout batches of 1 and 8; the learner recomputes 3 inputs a pass
        rollout = factory(device="cpu").requires_grad_(False)
        _, traj = generate(
            rollout,
            PROMPTS,
            [i // 4 for i in range(n)],
            plan,
            [i // 4 for i in range(n)],
            list(range(100, 100 + n)),
            0,
            micro_batch=rollout_micro,
        )
        cond = worker.policy.encode(traj.prompts)
        # with grad, as in training: the learner's passes of micro_batch model inputs, the
        # transformer through its checkpointed blocks; _pass returns each transition's log-ratio
        passes = pack_units(
            sample_units(traj.chunk_ids, list(range(n))), cfg.micro_batch, lambda r, c: (r, c)
        )
        log_ratio = torch.cat([worker._pass(traj, torch.zeros(n), units, cond, 5)[3] for units in passes])
        assert len(log_ratio) == n * 4  # every transition of every sample trained
        worst[rollout_micro] = log_ratio.abs().max().item()
    with capsys.disabled():
        print(
            f"\nbf16 max |log-ratio| rollout micro-batch -> learner passes of 3 inputs: {worst} "
            "(clip_range 1e-4)"
        )
    assert max(worst.values()) < 0.1 * cfg.clip_range  # an order of magnitude inside the clip range
