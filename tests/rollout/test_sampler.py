import torch

from rollout.plan import sde_plan
from rollout.policy import load_policy
from rollout.sampler import generate, group_seeds, sample_ode
from rollout.sde import sde_step

PROMPT_A = "a red circle at the top left on a blue background"
PROMPT_B = "a cyan square at the center on a red background"


def rollout(policy, plan, iteration=0, run_seed=0):
    prompts, groups, initial, noise = [], [], [], []
    for g, prompt in enumerate([PROMPT_A, PROMPT_B]):
        a, b = group_seeds(run_seed, iteration, g, 3)
        prompts += [prompt] * 3
        groups += [g] * 3
        initial += a
        noise += b
    return generate(policy, prompts, groups, plan, initial, noise, policy_version=7)


def test_group_members_share_initial_noise_and_draw_their_own_sde_noise(random_tiny_dir):
    policy = load_policy(str(random_tiny_dir))
    plan = sde_plan(6, noise_level=0.7, sde_kind="flow", train_last=True)
    images, traj = rollout(policy, plan)
    assert images.shape == (6, 32, 32, 3)
    assert traj.latents.shape == (6, 7, 64, 48) and traj.latents.dtype == torch.float32
    assert traj.log_probs.shape == (6, 6) and traj.policy_version == 7
    x0 = traj.latents[:, 0]
    assert torch.equal(x0[0], x0[1]) and torch.equal(x0[0], x0[2])  # shared within a group
    assert not torch.equal(x0[0], x0[3])  # differs across groups
    x1 = traj.latents[:, 1]
    assert not torch.equal(x1[0], x1[1])  # each member its own SDE noise
    # reproducible from seeds, different next iteration
    _, again = rollout(policy, plan)
    assert torch.equal(again.latents, traj.latents)
    _, nxt = rollout(policy, plan, iteration=1)
    assert not torch.equal(nxt.latents[:, 0], traj.latents[:, 0])


def test_recomputed_log_probs_equal_the_stored_ones(random_tiny_dir):
    """The learner path: ratio = exp(new - old) must be exactly 1 before any update."""
    policy = load_policy(str(random_tiny_dir))
    plan = sde_plan(5, noise_level=0.7, sde_kind="flow", train_last=True)
    _, traj = rollout(policy, plan)
    cond = policy.encode(traj.prompts)
    for t in range(traj.num_transitions):
        x, x_next = traj.latents[:, t], traj.latents[:, t + 1]
        v = policy.velocity(x, traj.sigmas[t], cond)
        new = sde_step(x, v, traj.sigmas[t], traj.sigmas[t + 1], noise_level=0.7, kind="flow", x_next=x_next)
        torch.testing.assert_close(new.log_prob, traj.log_probs[:, t], atol=1e-5, rtol=0)


def test_dance_plan_never_trains_the_last_transition(random_tiny_dir):
    policy = load_policy(str(random_tiny_dir))
    plan = sde_plan(6, noise_level=0.3, sde_kind="dance", train_last=False, timestep_fraction=0.6)
    _, traj = rollout(policy, plan)
    # ⌊0.6 · (6 − 1)⌋ = 3 transitions per sample, never index 5
    assert traj.train_steps.shape == (6, 3)
    assert (traj.train_steps < 5).all()
    assert len({tuple(r) for r in traj.train_steps.tolist()}) > 1  # drawn per sample
    assert torch.equal(traj.chunk_ids, traj.train_steps)  # size-1 chunks


def test_ode_sampler_is_deterministic(random_tiny_dir):
    policy = load_policy(str(random_tiny_dir))
    a = sample_ode(policy, [PROMPT_A, PROMPT_B], [1, 2], num_steps=4)
    b = sample_ode(policy, [PROMPT_A, PROMPT_B], [1, 2], num_steps=4)
    assert a.shape == (2, 32, 32, 3) and (a == b).all()
