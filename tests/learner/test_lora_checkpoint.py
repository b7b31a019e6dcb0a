"""LoRA through the learner: only adapters train, and a checkpoint (saved without the frozen
base weights) restores them exactly."""

import functools
import os

import pytest
import torch

from learner.config import LearnerConfig
from learner.engine import free_port
from learner.worker import LearnerWorker, Minibatch
from rollout.config import LoraConfig, ModelConfig
from rollout.plan import sde_plan
from rollout.policy import policy_from_config
from rollout.sampler import generate

pytestmark = pytest.mark.slow


def test_lora_update_save_and_load(flux_dir, tmp_path):
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    model = ModelConfig(
        path=str(flux_dir),
        resolution=32,
        max_sequence_length=16,
        finetune="lora",
        lora=LoraConfig(rank=4, alpha=8),
    )
    factory = functools.partial(policy_from_config, model)
    cfg = LearnerConfig(lr=1e-2, micro_batch=4)
    a = LearnerWorker(factory, cfg, 0, 1)
    a.setup("127.0.0.1", free_port())
    base = {n: p.detach().clone() for n, p in a.engine.module.named_parameters() if "lora_" not in n}
    start, _ = a.publish()

    plan = sde_plan(3, noise_level=0.7, sde_kind="flow", train_last=True)
    prompts = ["a red circle", "a red circle", "a blue square", "a blue square"]
    _, traj = generate(a.policy, prompts, [0, 0, 1, 1], plan, [1, 1, 2, 2], [3, 4, 5, 6], policy_version=0)
    stats = a.train(traj, torch.tensor([1.0, -1.0, 1.0, -1.0]), [Minibatch(rows=[0, 1, 2, 3], size=4)])
    assert abs(stats["ratio_mean_first"] - 1) < 1e-5 and stats["grad_norm"] > 0
    trained, checksum = a.publish()
    assert set(trained) == set(start) and any(not torch.equal(trained[k], start[k]) for k in start)
    for n, p in a.engine.module.named_parameters():  # the base model never moves
        if n in base:
            assert torch.equal(p, base[n]), n

    a.save(str(tmp_path / "ckpt"))
    b = LearnerWorker(factory, cfg, 0, 1)
    b.setup("127.0.0.1", free_port())
    assert b.publish()[1] != checksum
    b.load(str(tmp_path / "ckpt"))
    assert b.publish()[1] == checksum
