"""The DeepSpeed learner against the readable version: one optimizer step of LearnerWorker
(ZeRO-2, several backward passes: micro-batches × column blocks) equals one plain torch
backward of the whole objective and one torch AdamW step."""

import functools
import os

import pytest
import torch

from learner.config import LearnerConfig
from learner.engine import free_port
from learner.objective import clipped_objective
from learner.worker import LearnerWorker
from rollout.config import ModelConfig
from rollout.plan import sde_plan
from rollout.policy import policy_from_config
from rollout.sampler import generate
from rollout.sde import sde_step

pytestmark = pytest.mark.slow
PROMPTS = ["a red circle at the center on a blue background"] * 3 + ["a blue square at the top left on a red background"] * 2


def plain_step(policy, traj, adv, cfg):
    """Log-probs of every trained transition, the clipped objective, backward, AdamW."""
    params = [p for p in policy.transformer.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, eps=1e-8, weight_decay=cfg.weight_decay)
    t = traj.train_steps.clamp(min=0)  # [B, S]
    rows = torch.arange(len(traj))
    cond = policy.encode(traj.prompts)
    log_prob = []
    for s in range(t.shape[1]):
        x, x_next = traj.latents[rows, t[:, s]], traj.latents[rows, t[:, s] + 1]
        v = policy.velocity(x, traj.sigmas[t[:, s]], cond)
        log_prob.append(sde_step(x, v, traj.sigmas[t[:, s]], traj.sigmas[t[:, s] + 1], noise_level=traj.noise_level,
                                 kind=traj.sde_kind, x_next=x_next).log_prob)
    old = traj.log_probs[rows[:, None], t]
    loss, _ = clipped_objective(torch.stack(log_prob, 1), old, adv, traj.chunk_ids, clip_range=cfg.clip_range,
                                mask=traj.train_steps >= 0)
    loss.backward()
    opt.step()
    return loss.item()


def test_one_learner_step_equals_plain_torch_over_several_backward_passes():
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    torch.manual_seed(0)
    factory = functools.partial(policy_from_config, ModelConfig(path="tiny"))
    # micro-batch 2 of 5 samples: 3 backward passes for one optimizer step
    cfg = LearnerConfig(lr=1e-3, micro_batch=2, clip_range=0.5, max_grad_norm=1e9)
    worker, reference = LearnerWorker(factory, cfg, 0, 1), factory()
    worker.setup("127.0.0.1", free_port())
    # weighted sampling of one chunk of [1, 3]: rows train 1 or 3 transitions, -1 padded
    plan = sde_plan(4, noise_level=0.7, sde_kind="flow", train_last=True, chunk_sizes=[1, 3],
                    chunk_weights=[1.0, 1.0], chunks_per_sample=1)
    _, traj = generate(worker.policy, PROMPTS, [0, 0, 0, 1, 1], plan, [1, 1, 1, 2, 2], [3, 4, 5, 6, 7], policy_version=0)
    assert (traj.train_steps == -1).any() and (traj.train_steps >= 0).all(dim=1).any()
    adv = torch.tensor([1.0, -0.5, 0.3, 1.0, -1.0])

    expected_loss = plain_step(reference, traj, adv, cfg)
    stats = worker.train(traj, adv, torch.ones(5, dtype=torch.bool))

    assert stats["loss"] == pytest.approx(expected_loss, abs=1e-6)
    mine = dict(worker.engine.module.named_parameters())
    for name, p in reference.transformer.named_parameters():
        # Adam's first step moves each weight by ≈ lr·sign(g): a pass lost from the sum flips signs (2e-3)
        torch.testing.assert_close(mine[name].detach(), p.detach(), atol=2e-5, rtol=0, msg=name)


@pytest.mark.parametrize("zero_stage, offload", [(2, False), (3, False), (3, True)], ids=["zero2", "zero3", "zero3-offload"])
def test_two_ranks_with_unequal_shards_equal_one_plain_step(local_ray, zero_stage, offload):
    """ZeRO-2 / ZeRO-3 over 2 Ray actors, 5 samples: rank 0 gets 2 (one micro-batch), rank 1 gets
    3 (two), and their column blocks differ. Each backward reduces collectively, so the ranks must
    run equally many (rank 0 pads with a zero-weight pass); the update is still the plain one.
    Under ZeRO-3 each rank holds half of every parameter: publish gathers them bucket by bucket;
    with offload_optimizer the AdamW step runs on the host copies (ZeRO-Offload)."""
    import ray

    torch.manual_seed(0)
    factory = functools.partial(policy_from_config, ModelConfig(path="tiny"), device="cpu")
    cfg = LearnerConfig(lr=1e-3, micro_batch=2, clip_range=0.5, max_grad_norm=1e9, world_size=2, torch_threads=1,
                        zero_stage=zero_stage, offload_optimizer=offload)
    reference = factory()
    plan = sde_plan(4, noise_level=0.7, sde_kind="flow", train_last=True, chunk_sizes=[1, 3],
                    chunk_weights=[1.0, 1.0], chunks_per_sample=1)
    _, traj = generate(reference, PROMPTS, [0, 0, 0, 1, 1], plan, [1, 1, 1, 2, 2], [3, 4, 5, 6, 7], policy_version=0)
    adv = torch.tensor([1.0, -0.5, 0.3, 1.0, -1.0])

    remote = ray.remote(LearnerWorker).options(num_cpus=0, runtime_env={"env_vars": {"DS_ACCELERATOR": "cpu"}})
    ranks = [remote.remote(factory, cfg, r, 2) for r in range(2)]
    try:
        addr, port = ray.get(ranks[0].rendezvous.remote())
        ray.get([a.setup.remote(addr, port) for a in ranks])
        ref = ray.put(traj)
        stats = ray.get([a.update.remote([ref], [5], list(range(5)), [True] * 5, adv.tolist()) for a in ranks],
                        timeout=300)  # unequal backward counts would leave one rank waiting here
        (state, _), _ = ray.get([a.publish.remote() for a in ranks])
        held = ray.get([a.__ray_call__.remote(_held_elements) for a in ranks])  # (held here, full model)
        offloaded = ray.get([a.__ray_call__.remote(lambda w: bool(w.engine.zero_offload_optimizer())) for a in ranks])
    finally:
        for a in ranks:
            ray.kill(a)
    total = sum(p.numel() for p in reference.transformer.parameters())
    assert offloaded == [offload] * 2
    if zero_stage == 3:  # each rank keeps about half of every parameter (partitions padded to equal size)
        assert all(full == total and 0.45 * total < mine < 0.55 * total for mine, full in held)
    else:
        assert held == [(total, total)] * 2
    expected_loss = plain_step(reference, traj, adv, cfg)
    # each rank's loss is the mean over its own chunks; weighted by chunk counts they give the global mean
    assert sum(s["loss"] * s["chunks"] for s in stats) / sum(s["chunks"] for s in stats) == pytest.approx(expected_loss, abs=1e-6)
    for name, p in reference.transformer.named_parameters():
        torch.testing.assert_close(state[name], p.detach(), atol=2e-5, rtol=0, msg=name)


def _held_elements(worker) -> tuple[int, int]:
    """(parameter elements this rank holds, elements of the full model); ZeRO-3 keeps a partition."""
    params = list(worker.engine.module.parameters())
    held = sum(p.ds_tensor.numel() if hasattr(p, "ds_tensor") else p.numel() for p in params)
    return held, sum(p.ds_numel if hasattr(p, "ds_numel") else p.numel() for p in params)
