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


def test_egrpo_columns_share_the_anchor_latent_and_split_after_their_sde_step(random_tiny_dir):
    from rollout.plan import entropy_branch_plan

    policy = load_policy(str(random_tiny_dir))
    plan = entropy_branch_plan(8, noise_level=0.7, sde_kind="flow", branch_window=0.5)
    g, k = 3, len(plan.branches)
    members = plan.members_per_group(g)  # K columns of G members per prompt
    prompts, columns, initial, noise = [], [], [], []
    for group, prompt in enumerate([PROMPT_A, PROMPT_B]):
        a, b = group_seeds(0, 0, group, members)
        prompts += [prompt] * members
        columns += [plan.column_label(group, m, g) for m in range(members)]
        initial += a
        noise += b
    images, traj = generate(policy, prompts, columns, plan, initial, noise, policy_version=0, group_size=g)
    assert images.shape == (2 * members, 32, 32, 3) and traj.shared_inputs
    lat = traj.latents  # [B, M+1, 64, 48]
    for prompt in range(2):
        rows = lambda c: [prompt * members + c * g + m for m in range(g)]
        for c, b in enumerate(plan.branches):
            col = rows(c)
            for t in range(b + 1):  # up to x_b every member of the column sits on the anchor
                assert all(torch.equal(lat[col[0], t], lat[r, t]) for r in col)
            assert not torch.equal(lat[col[0], b + 1], lat[col[1], b + 1])  # own SDE noise
            assert (traj.train_steps[col] == b).all()
            nonzero = (traj.log_probs[col] != 0).nonzero()[:, 1]
            assert (nonzero == b).all() and len(nonzero) == g  # one stochastic transition each
    # the anchor is the ODE path: a member of the last column matches the first column's
    # members up to the first column's branch step
    first, last = 0, (k - 1) * g
    for t in range(plan.branches[0] + 1):
        assert torch.equal(lat[first, t], lat[last, t])


def test_egrpo_recomputed_log_probs_match(random_tiny_dir):
    from rollout.plan import entropy_branch_plan

    policy = load_policy(str(random_tiny_dir))
    plan = entropy_branch_plan(8, noise_level=0.7, sde_kind="flow")
    members = plan.members_per_group(2)
    a, b = group_seeds(0, 0, 0, members)
    _, traj = generate(policy, [PROMPT_A] * members, [plan.column_label(0, m, 2) for m in range(members)],
                       plan, a, b, policy_version=0, group_size=2)
    cond = policy.encode(traj.prompts)
    t = traj.train_steps[:, 0]
    rows = torch.arange(len(t))
    x, x_next = traj.latents[rows, t], traj.latents[rows, t + 1]
    v = policy.velocity(x, traj.sigmas[t], cond)
    new = sde_step(x, v, traj.sigmas[t], traj.sigmas[t + 1], noise_level=0.7, kind="flow", x_next=x_next)
    torch.testing.assert_close(new.log_prob, traj.log_probs[rows, t], atol=1e-5, rtol=0)
