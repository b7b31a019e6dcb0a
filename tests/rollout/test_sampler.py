import pytest
import torch

from rollout.plan import sde_plan
from rollout.policy import load_policy
from rollout.sampler import generate, group_seeds, sample_ode
from rollout.sde import sde_step

PROMPT_A = "a red circle at the top left on a blue background"
PROMPT_B = "a cyan square at the center on a red background"


def rollout(policy, plan, iteration=0, run_seed=0, select=None):
    prompts, groups, initial, noise = [], [], [], []
    for g, prompt in enumerate([PROMPT_A, PROMPT_B]):
        a, b = group_seeds(run_seed, iteration, g, 3)
        prompts += [prompt] * 3
        groups += [g] * 3
        initial += a
        noise += b
    return generate(policy, prompts, groups, plan, initial, noise, policy_version=7, select=select)


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
    from learner.chunking import ChunkSelector

    policy = load_policy(str(random_tiny_dir))
    plan = sde_plan(6, noise_level=0.3, sde_kind="dance", train_last=False)
    _, traj = rollout(policy, plan, select=ChunkSelector(mode="step", fraction=0.6))
    # int(0.6 · (6 − 1)) = 3 transitions per sample, never index 5; S = 5 trainable, -1 padded
    assert traj.train_steps.shape == (6, 5)
    real = [[t for t in row if t >= 0] for row in traj.train_steps.tolist()]
    assert all(len(r) == 3 and max(r) < 5 for r in real)
    assert len({tuple(r) for r in real}) > 1  # drawn per sample
    assert torch.equal(torch.where(traj.train_steps >= 0, traj.train_steps + 1, -1), traj.train_ends)


def test_images_decode_x0_hat_of_the_last_model_call_and_the_trajectory_keeps_x_n(random_tiny_dir):
    """Every reference decodes x̂0 = x_{N−1} − σ_{N−1}·v of the last model call (the Euler result),
    not x_N, whose last SDE step adds std·ξ of noise (ALGORITHMS.md §1.1, §3)."""
    policy = load_policy(str(random_tiny_dir))
    plan = sde_plan(4, noise_level=0.7, sde_kind="flow", train_last=True)
    images, traj = rollout(policy, plan)
    cond = policy.encode(traj.prompts)
    x = traj.latents[:, -2]
    x0 = x - plan.sigmas[-2] * policy.velocity(x, plan.sigmas[-2], cond)
    assert (policy.decode(x0) == images).all()
    assert not (policy.decode(traj.latents[:, -1]) == images).all()  # x_N carries the last step's noise
    assert traj.log_probs[:, -1].ne(0).all()  # and its log-prob, for a plan that trains it


def test_ode_sampler_is_deterministic(random_tiny_dir):
    policy = load_policy(str(random_tiny_dir))
    a = sample_ode(policy, [PROMPT_A, PROMPT_B], [1, 2], num_steps=4)
    b = sample_ode(policy, [PROMPT_A, PROMPT_B], [1, 2], num_steps=4)
    assert a.shape == (2, 32, 32, 3) and (a == b).all()


def window_rollout(policy, plan, g, prompts=(PROMPT_A, PROMPT_B)):
    members = plan.members_per_group(g)  # K columns of G members per prompt
    all_prompts, columns, initial, noise = [], [], [], []
    for group, prompt in enumerate(prompts):
        a, b = group_seeds(0, 0, group, members)
        all_prompts += [prompt] * members
        columns += [plan.column_label(group, m, g) for m in range(members)]
        initial += a
        noise += b
    images, traj = generate(
        policy, all_prompts, columns, plan, initial, noise, policy_version=0, group_size=g, micro_batch=5
    )
    return images, traj, noise


def test_egrpo_members_follow_branch_path_from_the_shared_anchor(random_tiny_dir):
    """The batched E-GRPO rollout (all columns in one time loop, calls of at most 5) equals the
    plain one-window reference `branch_path` for every member, with the member's own noise."""
    from rollout.plan import entropy_window_plan
    from rollout.sampler import branch_path, noise_from_seeds

    policy = load_policy(str(random_tiny_dir))
    plan = entropy_window_plan(8, noise_level=0.7, tau=2.9)  # a merged window from σ = 1: guard σ_1
    assert plan.windows == ((0, 2), (1, 2), (2, 4), (3, 6))
    g = 2
    images, traj, noise_seeds = window_rollout(policy, plan, g)
    members = plan.members_per_group(g)
    assert images.shape == (2 * members, 32, 32, 3) and traj.shared_inputs
    lat = traj.latents
    for prompt in range(2):
        cond = policy.encode([[PROMPT_A, PROMPT_B][prompt]])

        def velocity(x, sigma):
            return policy.velocity(x, sigma, cond.select([0] * len(x)))

        for c, (k, e) in enumerate(plan.windows):
            rows = [prompt * members + c * g + m for m in range(g)]
            x_T = lat[rows, 0]
            noise = noise_from_seeds([noise_seeds[r] for r in rows], policy.latent_shape)
            ref = branch_path(velocity, x_T, plan.sigmas, (k, e), noise, noise_level=0.7)
            torch.testing.assert_close(lat[rows, k], ref.x_start, atol=1e-5, rtol=0)
            torch.testing.assert_close(lat[rows, e], ref.x_end, atol=1e-5, rtol=0)
            torch.testing.assert_close(traj.log_probs[rows, k], ref.log_prob, atol=1e-5, rtol=0)
            assert (policy.decode(ref.x0) == images[rows]).mean() > 0.999  # uint8 rounding at the edges only
            assert (traj.train_steps[rows, 0] == k).all() and (traj.train_ends[rows, 0] == e).all()
            nonzero = (traj.log_probs[rows] != 0).nonzero()[:, 1]
            assert (nonzero == k).all() and len(nonzero) == g  # one stochastic step each
            for t in range(k + 1):  # up to x_k every member of the column sits on the anchor
                assert torch.equal(lat[rows[0], t], lat[rows[1], t])
            assert not torch.equal(lat[rows[0], e], lat[rows[1], e])  # own SDE noise
            assert all(
                torch.equal(lat[r, t], lat[r, e]) for r in rows for t in range(k + 1, e)
            )  # inside: x_e


def test_branch_path_granularity_stride_continues_on_a_coarser_grid():
    """stride 2 after window (1, 3) of 8 steps: the continuation grid is σ_3, σ_4, σ_6, σ_8 (VisualGRPO's
    prefix σ_0..σ_3 + suffix σ_4::2); with v = 0 every step is x and the log-prob is the SDE's."""
    from rollout.sampler import branch_path
    from rollout.sde import sigma_schedule

    sigmas = sigma_schedule(8).tolist()
    calls = []

    def velocity(x, sigma):
        calls.append(round(sigma, 6))
        return torch.zeros_like(x)

    x = torch.ones(2, 3)
    out = branch_path(velocity, x, sigmas, (1, 3), torch.zeros(2, 3), noise_level=0.7, stride=2)
    assert calls == [round(s, 6) for s in (sigmas[0], sigmas[1], sigmas[3], sigmas[4], sigmas[6])]
    # v = 0: anchor x stays 1; the SDE mean is x·(1 + g²/(2σ)·(σ_3 − σ_1)), the tail keeps it
    g2 = 0.49 * sigmas[1] / (1 - sigmas[1])
    torch.testing.assert_close(
        out.x_end, torch.full((2, 3), 1 + g2 / (2 * sigmas[1]) * (sigmas[3] - sigmas[1]))
    )
    torch.testing.assert_close(out.x0, out.x_end)
    with pytest.raises(ValueError, match="0 <= start < end < 8"):
        branch_path(velocity, x, sigmas, (2, 8), torch.zeros(2, 3), noise_level=0.7)


def test_egrpo_recomputed_log_probs_match_with_the_window_and_its_guard(random_tiny_dir):
    from rollout.plan import entropy_window_plan

    policy = load_policy(str(random_tiny_dir))
    plan = entropy_window_plan(8, noise_level=0.7, tau=2.9)
    _, traj, _ = window_rollout(policy, plan, 2, prompts=(PROMPT_A,))
    cond = policy.encode(traj.prompts)
    t, e = traj.train_steps[:, 0], traj.train_ends[:, 0]
    rows = torch.arange(len(t))
    x, x_next = traj.latents[rows, t], traj.latents[rows, e]
    v = policy.velocity(x, traj.sigmas[t], cond)
    new = sde_step(
        x,
        v,
        traj.sigmas[t],
        traj.sigmas[e],
        noise_level=0.7,
        kind="flow",
        x_next=x_next,
        guard_sigma=float(traj.sigmas[1]),
    )
    torch.testing.assert_close(new.log_prob, traj.log_probs[rows, t], atol=1e-5, rtol=0)
