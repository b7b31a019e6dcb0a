"""The DeepSpeed learner against the readable version: the optimizer steps of LearnerWorker
(ZeRO-2, ZeRO-3 and ZeRO-3 with optimizer offload; several backward passes per step, several
steps per batch) equal plain torch: for each minibatch one backward of `clipped_objective` over
its samples and one AdamW step."""

import functools
import os

import pytest
import torch

from learner.chunking import ChunkSelector
from learner.config import LearnerConfig
from learner.engine import free_port
from learner.objective import clipped_objective
from learner.worker import LearnerWorker, Minibatch
from rollout.config import ModelConfig
from rollout.plan import entropy_window_plan, sde_plan
from rollout.policy import policy_from_config
from rollout.sampler import generate
from rollout.sde import sde_step

pytestmark = pytest.mark.slow
PROMPTS = ["a red circle at the center on a blue background"] * 3 + [
    "a blue square at the top left on a red background"
] * 2


def plain_steps(policy, traj, adv, cfg, minibatches):
    """Per minibatch: log-probs of every trained step, the clipped objective, backward, AdamW.
    Returns the losses and the gradient norms of the steps."""
    params = [p for p in policy.transformer.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, eps=1e-8, weight_decay=cfg.weight_decay)
    losses, norms = [], []
    for rows in minibatches:
        sub = traj.select(rows)
        pad = sub.train_steps < 0  # [b, S]; pads score transition 0 -> 1 and are masked
        t, e = sub.train_steps.clamp(min=0), torch.where(pad, 1, sub.train_ends)
        r = torch.arange(len(sub))
        cond = policy.encode(sub.prompts)
        log_prob = []
        for s in range(t.shape[1]):
            x, x_next = sub.latents[r, t[:, s]], sub.latents[r, e[:, s]]
            v = policy.velocity(x, sub.sigmas[t[:, s]], cond)
            log_prob.append(
                sde_step(
                    x,
                    v,
                    sub.sigmas[t[:, s]],
                    sub.sigmas[e[:, s]],
                    noise_level=sub.noise_level,
                    kind=sub.sde_kind,
                    x_next=x_next,
                    guard_sigma=float(sub.sigmas[1]),
                ).log_prob
            )
        loss, _ = clipped_objective(
            torch.stack(log_prob, 1),
            sub.log_probs[r[:, None], t],
            adv[rows],
            sub.chunk_ids,
            clip_range=cfg.clip_range,
            mask=sub.train_steps >= 0,
        )
        opt.zero_grad()
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(params, float("inf"))))  # the norm, unclipped
        opt.step()
        losses.append(loss.item())
    return losses, norms


def chunk_batch(policy):
    """5 samples of a 4-step flow plan whose trajectories train 1 of the chunks [1, 3] (chunk
    sizes 1 or 3, -1 padded): unequal passes and per-sample chunk counts."""
    plan = sde_plan(4, noise_level=0.7, sde_kind="flow", train_last=True)
    select = ChunkSelector(mode="fixed", sizes=(1, 3), fraction=0.5)
    _, traj = generate(
        policy,
        PROMPTS,
        [0, 0, 0, 1, 1],
        plan,
        [1, 1, 1, 2, 2],
        [3, 4, 5, 6, 7],
        policy_version=0,
        select=select,
    )
    assert set((traj.train_steps >= 0).sum(dim=1).tolist()) == {1, 3}
    return traj


def window_batch(policy):
    """E-GRPO: one prompt, windows of an 8-step grid (one from σ = 1 spans two steps), 2 members each."""
    plan = entropy_window_plan(8, noise_level=0.7, tau=2.9)
    members = plan.members_per_group(2)
    _, traj = generate(
        policy,
        PROMPTS[:1] * members,
        [plan.column_label(0, m, 2) for m in range(members)],
        plan,
        [1] * members,
        list(range(10, 10 + members)),
        policy_version=0,
        group_size=2,
    )
    return traj


@pytest.mark.parametrize("batch", ["chunks", "windows"])
def test_learner_steps_equal_plain_torch_over_several_passes_and_minibatches(batch):
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    torch.manual_seed(0)
    factory = functools.partial(policy_from_config, ModelConfig(path="tiny"))
    # micro-batch 2: several backward passes per optimizer step; two minibatches: two steps, the
    # second with ratio != 1 (after the first update) and clipping at ε = 2e-3
    cfg = LearnerConfig(lr=1e-3, micro_batch=2, clip_range=2e-3, max_grad_norm=1e9)
    worker, reference = LearnerWorker(factory, cfg, 0, 1), factory()
    worker.setup("127.0.0.1", free_port())
    traj = chunk_batch(worker.policy) if batch == "chunks" else window_batch(worker.policy)
    n = len(traj)
    adv = torch.linspace(-1.0, 1.2, n)
    minibatches = [[3, 0, 4], [1, 2]] if n == 5 else [[0, 1, 2, 3], [4, 5, 6, 7]]

    expected, norms = plain_steps(reference, traj, adv, cfg, minibatches)
    stats = worker.train(traj, adv, [Minibatch(rows=mb, size=len(mb)) for mb in minibatches])

    assert stats["optimizer_steps"] == 2 and stats["nonfinite_loss"] == stats["nonfinite_grad"] == 0
    assert stats["loss"] == pytest.approx(sum(expected) / 2, abs=1e-6)  # mean over the two steps
    assert stats["ratio_mean_first"] == pytest.approx(1.0, abs=1e-6)
    assert stats["ratio_dev_later"] > 1e-5  # the second step sees the first one's update
    assert stats["grad_norm"] == pytest.approx(max(norms), rel=1e-4)  # the largest of both steps'
    mine = dict(worker.engine.module.named_parameters())
    for name, p in reference.transformer.named_parameters():
        # Adam's first step moves each weight by ≈ lr·sign(g): a pass lost from the sum flips signs (2e-3)
        torch.testing.assert_close(mine[name].detach(), p.detach(), atol=2e-5, rtol=0, msg=name)


@pytest.mark.parametrize(
    "zero_stage, offload", [(2, False), (3, False), (3, True)], ids=["zero2", "zero3", "zero3-offload"]
)
def test_two_ranks_with_an_empty_shard_equal_plain_steps(local_ray, zero_stage, offload):
    """ZeRO-2 / ZeRO-3 over 2 Ray actors, 5 samples in minibatches [0, 1, 2] and [3]: in the second,
    rank 0's shard is empty and it runs zero-weight passes on the minibatch's first sample, so both
    ranks reduce the same number of times; the update is still the plain one. Under ZeRO-3 each
    rank holds half of every parameter: publish gathers them bucket by bucket; with
    offload_optimizer the AdamW step runs on the host copies (ZeRO-Offload)."""
    import ray

    torch.manual_seed(0)
    factory = functools.partial(policy_from_config, ModelConfig(path="tiny"), device="cpu")
    cfg = LearnerConfig(
        lr=1e-3,
        micro_batch=2,
        clip_range=0.5,
        max_grad_norm=1e9,
        world_size=2,
        torch_threads=1,
        zero_stage=zero_stage,
        offload_optimizer=offload,
    )
    reference = factory()
    traj = chunk_batch(reference)
    adv = torch.tensor([1.0, -0.5, 0.3, 1.0, -1.0])
    samples, minibatches = [0, 1, 2, 3, 4], [[0, 1, 2], [3]]  # sample 4 is not trained (say, best-of-N)

    remote = ray.remote(LearnerWorker).options(
        num_cpus=0, runtime_env={"env_vars": {"DS_ACCELERATOR": "cpu"}}
    )
    ranks = [remote.remote(factory, cfg, r, 2) for r in range(2)]
    try:
        addr, port = ray.get(ranks[0].rendezvous.remote())
        ray.get([a.setup.remote(addr, port) for a in ranks])
        ref = ray.put(traj)
        stats = ray.get(
            [a.update.remote([ref], [5], samples, adv.tolist(), minibatches) for a in ranks], timeout=300
        )  # unequal backward counts would leave one rank waiting here
        (state, _), _ = ray.get([a.publish.remote() for a in ranks])
        held = ray.get([a.__ray_call__.remote(_held_elements) for a in ranks])  # (held here, full model)
        offloaded = ray.get(
            [a.__ray_call__.remote(lambda w: bool(w.engine.zero_offload_optimizer())) for a in ranks]
        )
    finally:
        for a in ranks:
            ray.kill(a)
    total = sum(p.numel() for p in reference.transformer.parameters())
    assert offloaded == [offload] * 2
    if zero_stage == 3:  # each rank keeps about half of every parameter (partitions padded to equal size)
        assert all(full == total and 0.45 * total < mine < 0.55 * total for mine, full in held)
    else:
        assert held == [(total, total)] * 2
    expected, norms = plain_steps(reference, traj, adv, cfg, minibatches)
    from orchestrator.cluster import merge_rank_stats

    merged = merge_rank_stats([dict(s, learner_s=0.0) for s in stats])
    # each rank's loss is its share of each minibatch's mean; they add up to the global one
    assert merged["loss"] == pytest.approx(sum(expected) / 2, abs=1e-6)
    assert merged["optimizer_steps"] == 2 and stats[0]["chunks"] == 1 and stats[1]["chunks"] == 3
    assert merged["grad_norm"] == pytest.approx(max(norms), rel=1e-4) and merged["nonfinite"] == 0
    for name, p in reference.transformer.named_parameters():
        torch.testing.assert_close(state[name], p.detach(), atol=2e-5, rtol=0, msg=name)


def _held_elements(worker) -> tuple[int, int]:
    """(parameter elements this rank holds, elements of the full model); ZeRO-3 keeps a partition."""
    params = list(worker.engine.module.parameters())
    held = sum(p.ds_tensor.numel() if hasattr(p, "ds_tensor") else p.numel() for p in params)
    return held, sum(p.ds_numel if hasattr(p, "ds_numel") else p.numel() for p in params)
