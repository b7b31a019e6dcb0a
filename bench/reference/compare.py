"""Our algorithm functions against the official code of the five references (on demand, not CI).

    python bench/reference/compare.py [--ref ~/.cache/raygrpo/ref] [--out bench/results/reference.json]

`--ref` holds checkouts of xingzhejun/GCPO@ea6cc4d, shengjun-zhang/VisualGRPO@ae619bf,
XueZeyue/DanceGRPO@15cc71d, yifan123/flow_grpo@ac4c86e and Tencent-Hunyuan/MixGRPO@e5cdd6a, as
GCPO/, VisualGRPO/, DanceGRPO/, flow_grpo/, MixGRPO/ (bench/reference/fetch.sh makes them).
Nothing of theirs is copied here: each check loads the reference function from its file — a
whole module where it imports lightly, else the function's own source cut out of the file by
its name (the training scripts import FSDP, reward models and wandb at the top) — runs it and
ours on the same inputs, and records the largest difference. Writes bench/results/reference.{json,md}.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import math
import subprocess
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from learner.advantages import batch_std_advantages, granular_advantages, group_advantages  # noqa: E402
from learner.chunking import chunk_sampling_probs, train_count, trajectory_l1_rel, uniform_chunks  # noqa: E402
from learner.objective import clipped_objective  # noqa: E402
from rollout.plan import SlidingWindow  # noqa: E402
from rollout.sampler import branch_path  # noqa: E402
from rollout.sde import sde_step, sigma_schedule  # noqa: E402

COMMITS = {
    "GCPO": "ea6cc4d",
    "VisualGRPO": "ae619bf",
    "DanceGRPO": "15cc71d",
    "flow_grpo": "ac4c86e",
    "MixGRPO": "e5cdd6a",
}
TOL = 1e-5


def function_from(path: Path, name: str, namespace: dict):
    """The function `name` of `path` (top level, or a method: then called with `self` first),
    compiled alone into `namespace`."""
    tree = ast.parse(path.read_text())
    nodes = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    nodes += [
        m for c in tree.body if isinstance(c, ast.ClassDef) for m in c.body if isinstance(m, ast.FunctionDef)
    ]
    node = next(n for n in nodes if n.name == name)
    exec(compile(ast.Module(body=[node], type_ignores=[]), str(path), "exec"), namespace)
    return namespace[name], node.lineno


def module_from(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def statements(path: Path, function: str, first: str, last: str, occurrence: int = 0) -> tuple[str, int]:
    """Source lines of `function` from the `occurrence`-th line containing `first` through the
    next line containing `last`, dedented (for logic the references write inline)."""
    import textwrap

    tree = ast.parse(path.read_text())
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function)
    lines = path.read_text().splitlines()[node.lineno - 1 : node.end_lineno]
    starts = [i for i, line in enumerate(lines) if first in line]
    a = starts[occurrence]
    b = next(i for i in range(a, len(lines)) if last in lines[i])
    return textwrap.dedent("\n".join(lines[a : b + 1])), node.lineno + a


def diff(a, b) -> float:
    return float(
        (torch.as_tensor(a, dtype=torch.float64) - torch.as_tensor(b, dtype=torch.float64)).abs().max()
    )


def check(results: list, name: str, source: str, value: float, note: str = "", tol: float = TOL) -> None:
    results.append(
        {
            "check": name,
            "reference": source,
            "max_abs_diff": value,
            "tolerance": tol,
            "agree": bool(value <= tol),
            "note": note,
        }
    )
    print(f"{'ok ' if value <= tol else 'DIFF'} {name}: {value:.3g} ({source})", flush=True)


def sample(g, sigmas, k, e, noise_level, kind, shape=(2, 32, 8)):
    """(x, v, x_next): random x and v, x_next drawn from the step's own Gaussian (log-probs of
    order one, as in a rollout; a random x_next would make them ~1e2 and float32 rounding 1e-5)."""
    x, v = torch.randn(*shape, generator=g), torch.randn(*shape, generator=g)
    step = sde_step(
        x,
        v,
        float(sigmas[k]),
        float(sigmas[e]),
        noise_level=noise_level,
        kind=kind,
        noise=torch.randn(*shape, generator=g),
        guard_sigma=float(sigmas[1]),
    )
    return x, v, step.x_next


def sde_checks(ref: Path, results: list) -> None:
    from diffusers.utils.torch_utils import randn_tensor

    ns = {
        "torch": torch,
        "math": math,
        "Optional": __import__("typing").Optional,
        "randn_tensor": randn_tensor,
    }
    gcpo = ref / "GCPO/fastvideo/train_grpo_flux_hpsv3.py"
    flow_step, line = function_from(gcpo, "flow_grpo_step", dict(ns))
    g = torch.Generator().manual_seed(0)
    sigmas = sigma_schedule(17, 3.0)
    worst = 0.0
    for k in (0, 1, 7, 15, 16):
        x, v, x_next = sample(g, sigmas, k, k + 1, 0.7, "flow")
        _, x0, lp = flow_step(v, x, 0.7, sigmas, k, prev_sample=x_next)
        ours = sde_step(
            x,
            v,
            float(sigmas[k]),
            float(sigmas[k + 1]),
            noise_level=0.7,
            kind="flow",
            x_next=x_next,
            guard_sigma=float(sigmas[1]),
        )
        worst = max(worst, diff(lp, ours.log_prob), diff(x0, x - sigmas[k] * v))
    check(
        results,
        "flow SDE log-prob and x̂0, 17-step shift-3 grid, k = 0, 1, 7, 15, 16",
        f"GCPO@{COMMITS['GCPO']} fastvideo/train_grpo_flux_hpsv3.py:{line} flow_grpo_step",
        worst,
    )

    dance, line = function_from(ref / "DanceGRPO/fastvideo/train_grpo_flux.py", "flux_step", dict(ns))
    sigmas = sigma_schedule(16, 3.0)
    worst = 0.0
    for k in (0, 5, 14):
        x, v, x_next = sample(g, sigmas, k, k + 1, 0.3, "dance")
        _, _, lp = dance(v, x, 0.3, sigmas, k, prev_sample=x_next, grpo=True, sde_solver=True)
        ours = sde_step(
            x, v, float(sigmas[k]), float(sigmas[k + 1]), noise_level=0.3, kind="dance", x_next=x_next
        )
        worst = max(worst, diff(lp, ours.log_prob))
    check(
        results,
        "dance SDE log-prob (η 0.3), 16-step shift-3 grid",
        f"DanceGRPO@{COMMITS['DanceGRPO']} fastvideo/train_grpo_flux.py:{line} flux_step",
        worst,
    )

    flow_mod = module_from(
        ref / "flow_grpo/flow_grpo/diffusers_patch/sd3_sde_with_logprob.py", "ref_flow_sde"
    )
    sigmas = sigma_schedule(10, 3.0)
    sched = SimpleNamespace(sigmas=sigmas, index_for_timestep=lambda t: int(t))
    worst = 0.0
    for k in (0, 4, 8):
        x, v, x_next = sample(g, sigmas, k, k + 1, 0.7, "flow", shape=(3, 4, 4, 4))
        _, lp, mean, std = flow_mod.sde_step_with_logprob(
            sched, v, torch.tensor([k] * 3), x, noise_level=0.7, prev_sample=x_next
        )
        ours = sde_step(
            x, v, float(sigmas[k]), float(sigmas[k + 1]), noise_level=0.7, kind="flow", x_next=x_next
        )
        worst = max(worst, diff(lp, ours.log_prob), diff(mean, ours.mean))
    check(
        results,
        "flow SDE log-prob and mean (SD3 scheduler patch)",
        f"flow_grpo@{COMMITS['flow_grpo']} flow_grpo/diffusers_patch/sd3_sde_with_logprob.py:11 "
        "sde_step_with_logprob",
        worst,
    )

    mix, line = function_from(ref / "MixGRPO/fastvideo/utils/sampling_utils.py", "flow_grpo_step", dict(ns))
    sigmas = sigma_schedule(25, 3.0)
    worst = 0.0
    for k in (0, 3, 20):
        x, v, x_next = sample(g, sigmas, k, k + 1, 0.7, "flow")
        out = mix(v, x, 0.7, sigmas, k, prev_sample=x_next, determistic=False)
        ours = sde_step(
            x, v, float(sigmas[k]), float(sigmas[k + 1]), noise_level=0.7, kind="flow", x_next=x_next
        )
        worst = max(worst, diff(out[2], ours.log_prob))
    check(
        results,
        "flow SDE log-prob, 25-step grid",
        f"MixGRPO@{COMMITS['MixGRPO']} fastvideo/utils/sampling_utils.py:{line}",
        worst,
    )


def visualgrpo_sampler(ref: Path):
    """VisualGRPO's FluxSampler, importable without its reward / FSDP packages."""
    root = ref / "VisualGRPO/fastvideo"
    for pkg, path in (
        ("fastvideo", root),
        ("fastvideo.workers", root / "workers"),
        ("fastvideo.workers.sampler", root / "workers/sampler"),
    ):
        mod = types.ModuleType(pkg)
        mod.__path__ = [str(path)]
        sys.modules[pkg] = mod
    module_from(root / "workers/rollout_buffer.py", "fastvideo.workers.rollout_buffer")
    module_from(root / "workers/sampler/base_sampler.py", "fastvideo.workers.sampler.base_sampler")
    return module_from(root / "workers/sampler/flux_sampler.py", "fastvideo.workers.sampler.flux_sampler")


def window_checks(ref: Path, results: list) -> None:
    """E-GRPO: one window step from σ = 1 and from inside the grid (the guard), and the whole
    branch — anchor, window step, ODE tail, x̂0 — against VisualGRPO's sampler on a toy model."""
    flux = visualgrpo_sampler(ref)
    sigmas = sigma_schedule(16, 3.0)
    g = torch.Generator().manual_seed(1)
    worst = 0.0
    for k, e in ((0, 2), (2, 4), (5, 8)):
        x, v, x_next = sample(g, sigmas, k, e, 0.7, "flow")
        _, _, lp = flux.FluxSampler._flow_grpo_step(
            None, v, x, 0.7, sigmas, k, prev_sample=x_next, merge_step=e - k
        )
        ours = sde_step(
            x,
            v,
            float(sigmas[k]),
            float(sigmas[e]),
            noise_level=0.7,
            kind="flow",
            x_next=x_next,
            guard_sigma=float(sigmas[1]),
        )
        worst = max(worst, diff(lp, ours.log_prob))
    check(
        results,
        "window step log-prob (0,2) (2,4) (5,8), guard σ' = σ_1",
        f"VisualGRPO@{COMMITS['VisualGRPO']} fastvideo/workers/sampler/flux_sampler.py:133 "
        "_flow_grpo_step(merge_step)",
        worst,
    )

    w = torch.randn(8, 8, generator=g) * 0.3

    def toy(x, t):  # a toy model, smooth in x and in the timestep the references feed (⌊1000σ⌋/1000)
        return torch.tanh(x.float() @ w) * (0.5 + t)

    class Transformer:  # stands in for FLUX in their sampler: same call, same quantised timestep
        def __call__(self, hidden_states, timestep, **_):
            return (toy(hidden_states, float(timestep[0])),)

        def train(self):
            return self

    import os

    os.environ["RANK"] = "1"  # their sampler prints debug lines on rank 0
    sampler = flux.FluxSampler(
        Transformer(),
        SimpleNamespace(enable_tiling=lambda: None),
        "cpu",
        {"sampling_steps": 16, "eta": 0.7, "shift": 3.0},
    )
    velocity = lambda x, sigma: toy(x, int(sigma * 1000) / 1000)  # noqa: E731
    conds = (torch.zeros(1, 3, 4), torch.zeros(1, 4), torch.zeros(3, 3), torch.zeros(6, 3))
    for (k, e), stride in (((1, 2), 1), ((3, 4), 1), ((1, 2), 2), ((2, 4), 1), ((5, 8), 1)):
        x_T = torch.randn(1, 6, 8, generator=g)
        _, anchor = sampler._run_anchor_sample(x_T, sigmas, *conds)  # [1, N+1, ...], stored in bf16
        torch.manual_seed(100 + k)
        latents, log_probs = sampler._run_sde_sample_step(anchor[:, k], k, sigmas, *conds, merge_step=e - k)
        grid = torch.cat((sigmas[: e + 1], sigmas[e + 1 :: stride]))  # flux_sampler.py:552-554
        x0_ref = sampler._run_ode_sample(latents[:, 1], k, grid, *conds)
        torch.manual_seed(100 + k)
        noise = torch.randn(1, 6, 8)
        ours = branch_path(velocity, x_T, sigmas.tolist(), (k, e), noise, noise_level=0.7, stride=stride)
        d = max(diff(ours.x_start, anchor[:, k]), diff(ours.x_end, latents[:, 1]), diff(ours.x0, x0_ref))
        note = "the release stores anchor and branch latents in bf16 (flux_sampler.py:311,362); ours float32"
        tol = 0.05
        if e > k + 1:
            note = (
                "differs by design: after a merged window the release restarts the ODE at σ_{k+1} "
                "and integrates the window again (flux_sampler.py:387, ALGORITHMS.md §5); "
                "ours continues from σ_e"
            )
            tol = float("inf")
        check(
            results,
            f"E-GRPO branch, window ({k},{e}), granularity {stride}: anchor x_k, x_e, x̂0",
            f"VisualGRPO@{COMMITS['VisualGRPO']} flux_sampler.py:246-410 _run_anchor_sample / "
            "_run_sde_sample_step / _run_ode_sample",
            d,
            note,
            tol=tol,
        )


def chunk_checks(ref: Path, results: list) -> None:
    chunk = module_from(ref / "GCPO/fastvideo/utils/chunk.py", "ref_gcpo_chunk")
    worst = 0
    for n in range(1, 20):
        for c in range(1, 9):
            args = SimpleNamespace(new_fix_chunk=False, chunk_size=c)
            _, _, sizes = chunk.set_chunk({"timesteps": torch.zeros(1, n)}, args)
            worst = max(worst, int(sizes != uniform_chunks(n, c)))
    check(
        results,
        "uniform chunk sizes, n = 1..19, c = 1..8",
        f"GCPO@{COMMITS['GCPO']} fastvideo/utils/chunk.py:1 set_chunk",
        float(worst),
    )

    path = ref / "GCPO/fastvideo/train_grpo_flux_hpsv3.py"
    code, line = statements(
        path, "train_one_step", "if args.sample_weight:", "torch.multinomial(weights_normalized"
    )
    g = torch.Generator().manual_seed(2)
    latents = torch.rand(24, 17, 40, 16, generator=g) + 0.1 * torch.arange(17)[None, :, None, None]
    samples = {"latents": latents[:, :-1], "next_latents": latents[:, 1:]}
    worst = 0.0
    for method in ("normalized", "softmax"):
        ns = {
            "samples": samples,
            "chunk_sizes": [2, 3, 4, 7],
            "num_chunks": 4,
            "torch": torch,
            "device": "cpu",
            "F": torch.nn.functional,
            "args": SimpleNamespace(sample_weight=True, sample_weight_method=method, remove=0),
        }
        exec(code, ns)
        ours = chunk_sampling_probs(trajectory_l1_rel(latents), [2, 3, 4, 7], method)
        worst = max(worst, diff(ns["weights_normalized"], ours))
    check(
        results,
        "chunk sampling probabilities from the trajectory's own L1_rel (normalized, softmax)",
        f"GCPO@{COMMITS['GCPO']} fastvideo/train_grpo_flux_hpsv3.py:{line} (--sample_weight)",
        worst,
        tol=1e-6,
    )

    code, line = statements(path, "train_one_step", "train_chunks = int(", "train_chunks = int(")
    worst = 0
    for k in range(2, 12):
        for f in [f for f in (0.25, 0.5, 0.6, 1.0) if k * f >= 1]:
            ns = {"num_chunks": k, "args": SimpleNamespace(timestep_fraction=f)}
            exec(code, ns)
            worst = max(worst, abs(ns["train_chunks"] - train_count(k, f)))
    check(
        results,
        "chunks trained per trajectory, K = 2..11 (K·f >= 1)",
        f"GCPO@{COMMITS['GCPO']} train_grpo_flux_hpsv3.py:{line}",
        float(worst),
        "for K·f < 1 the release trains none and crashes; ours trains 1 (ALGORITHMS.md §1.3, pinned)",
    )


def objective_checks(ref: Path, results: list) -> None:
    path = ref / "GCPO/fastvideo/train_grpo_flux_hpsv3.py"
    code, line = statements(
        path,
        "train_one_step",
        'advantages = torch.clamp(sample["advantages"]',
        "policy_loss = torch.mean(torch.maximum(unclipped_loss, clipped_loss))",
    )
    g = torch.Generator().manual_seed(3)
    worst = 0.0
    for _ in range(50):
        steps = int(torch.randint(1, 8, (1,), generator=g))
        old = torch.randn(steps, generator=g)
        new = old + 1e-4 * torch.randn(steps, generator=g)
        adv = torch.randn(1, generator=g) * 3
        ns = {
            "torch": torch,
            "sample": {"advantages": adv},
            "new_chunk_log_prob": new.mean(),
            "old_chunk_log_prob": old.mean(),
            "main_print": lambda *a: None,
            "ratio_chunk_list": [],
            "args": SimpleNamespace(adv_clip_max=5.0, clip_range=5e-5, right_clip_range=5e-5, debug=False),
        }
        exec(code, ns)
        # our advantages arrive clamped to ±5 (learner.advantages); GCPO clamps inside the loss
        ours, _ = clipped_objective(
            new[None], old[None], adv.clamp(-5, 5), torch.zeros(steps, dtype=torch.long), clip_range=5e-5
        )
        worst = max(worst, diff(ns["policy_loss"], ours))
    check(
        results,
        "chunk loss: geometric-mean ratio, clip 5e-5 both sides, 50 random chunks of 1..7 steps",
        f"GCPO@{COMMITS['GCPO']} fastvideo/train_grpo_flux_hpsv3.py:{line}",
        worst,
        tol=1e-6,
    )

    flux = visualgrpo_sampler(ref)
    trainer_src = ref / "VisualGRPO/fastvideo/trainer/grpo_trainer.py"
    loss_fn, line = function_from(
        trainer_src, "_compute_grpo_loss", {"torch": torch, "RolloutBuffer": object}
    )
    new, old = torch.randn(12, generator=g), torch.randn(12, generator=g)
    new = old + 2e-4 * torch.randn(12, generator=g)
    adv = torch.randn(12, 1, generator=g) * 2
    buffer = SimpleNamespace(
        log_probs=old[:, None],
        sigma_schedule=None,
        get_training_batch=lambda i: {"latents": None, "next_latents": None, "advantages": adv[:, i]},
    )
    me = SimpleNamespace(
        sampler=SimpleNamespace(compute_log_prob=lambda **k: new),
        eta_step_list=[1],
        eta_step_merge_list=[1],
        adv_clip_max=5.0,
        clip_range=1e-4,
    )
    ref_loss, _, _ = loss_fn(me, None, buffer, 0)
    ours, _ = clipped_objective(
        new[:, None], old[:, None], adv[:, 0].clamp(-5, 5), torch.zeros(1, dtype=torch.long), clip_range=1e-4
    )
    check(
        results,
        "E-GRPO column loss (12 members, clip 1e-4)",
        f"VisualGRPO@{COMMITS['VisualGRPO']} fastvideo/trainer/grpo_trainer.py:{line} _compute_grpo_loss",
        diff(ref_loss, ours),
        tol=1e-6,
    )
    del flux


def advantage_checks(ref: Path, results: list) -> None:
    g = torch.Generator().manual_seed(4)
    buf_mod = sys.modules.get("fastvideo.workers.rollout_buffer") or module_from(
        ref / "VisualGRPO/fastvideo/workers/rollout_buffer.py", "ref_rollout_buffer"
    )
    rewards = [torch.rand(24, 1, generator=g), torch.rand(24, 1, generator=g)]
    buf = buf_mod.RolloutBuffer(rewards=rewards)
    buf.compute_advantages(num_generations=12)
    ours = granular_advantages(torch.stack([r[:, 0] for r in rewards]), torch.arange(24) // 12)
    check(
        results,
        "E-GRPO multi-granularity advantages (2 granularities, 2 columns of 12), clamped ±5 as the loss does",
        f"VisualGRPO@{COMMITS['VisualGRPO']} fastvideo/workers/rollout_buffer.py:87 compute_advantages",
        diff(buf.advantages[:, 0].clamp(-5, 5), ours),
    )

    path = ref / "DanceGRPO/fastvideo/train_grpo_flux.py"
    code, line = statements(
        path,
        "train_one_step",
        'n = len(samples["rewards"]) // (args.num_generations)',
        'samples["advantages"] = advantages',
    )
    r = torch.rand(36, generator=g)
    ns = {"torch": torch, "samples": {"rewards": r}, "args": SimpleNamespace(num_generations=12)}
    import textwrap

    exec(textwrap.dedent(code), ns)
    check(
        results,
        "group advantages, 3 prompts × 12",
        f"DanceGRPO@{COMMITS['DanceGRPO']} fastvideo/train_grpo_flux.py:{line}",
        diff(ns["samples"]["advantages"], group_advantages(r, torch.arange(36) // 12)),
    )

    tracker = module_from(
        ref / "flow_grpo/flow_grpo/stat_tracking.py", "ref_stat_tracking"
    ).PerPromptStatTracker(True)
    r = np.random.default_rng(0).random(48)
    prompts = [f"p{i // 24}" for i in range(48)]
    check(
        results,
        "Flow-GRPO global-std advantages, 2 prompts × 24",
        f"flow_grpo@{COMMITS['flow_grpo']} "
        "flow_grpo/stat_tracking.py:11 PerPromptStatTracker(global_std=True)",
        diff(tracker.update(prompts, r), batch_std_advantages(torch.tensor(r), torch.arange(48) // 24)),
    )


def window_schedule_checks(ref: Path, results: list) -> None:
    states = module_from(ref / "MixGRPO/fastvideo/utils/grpo_states.py", "ref_grpo_states")
    st = states.GRPOTrainingStates(
        iters_per_group=25,
        group_size=4,
        max_timesteps=23,
        sample_strategy="progressive",
        prog_overlap=True,
        prog_overlap_step=1,
        roll_back=True,
    )
    ours = SlidingWindow(size=4, shift_every=25, stride=1, limit=23)
    mismatch = 0
    for t in range(575):
        mismatch += st.get_current_timesteps() != list(ours.steps(t))
        st.update_iteration()
    check(
        results,
        "MixGRPO sliding window over iterations 0..574 (25 steps, window 4, every 25, stride 1)",
        f"MixGRPO@{COMMITS['MixGRPO']} fastvideo/utils/grpo_states.py:85,141",
        float(mismatch),
        "at iteration 575 the release's window would be empty (start 23 = max_timesteps); "
        "ours rolls back there",
    )


def decode_checks(ref: Path, results: list) -> None:
    """The image every reference decodes: x̂0 of the last model call, not x_N."""
    from diffusers.utils.torch_utils import randn_tensor

    ns = {
        "torch": torch,
        "math": math,
        "Optional": __import__("typing").Optional,
        "randn_tensor": randn_tensor,
    }
    path = ref / "GCPO/fastvideo/train_grpo_flux_hpsv3.py"
    function_from(path, "flow_grpo_step", ns)
    function_from(path, "flux_step", ns)
    run, line = function_from(path, "run_sample_step", ns)
    sigmas = sigma_schedule(17, 3.0)
    w = torch.randn(8, 8, generator=torch.Generator().manual_seed(5)) * 0.3

    def transformer(hidden_states, timestep, **_):
        return (torch.tanh(hidden_states @ w) * (0.5 + timestep[0]),)

    transformer.eval = lambda: None
    args = SimpleNamespace(use_sto_step=False, step_end_idx=100, grpo_step_mode="flow", eta=0.7)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        z, image_latent, latents, _ = run(
            args,
            torch.randn(1, 6, 8),
            range(17),
            sigmas,
            transformer,
            torch.zeros(1, 3, 4),
            None,
            torch.zeros(1, 3),
            None,
            True,
        )
    x = latents[:, -2]
    v = transformer(x, torch.tensor([int(sigmas[-2] * 1000) / 1000]))[0]
    check(
        results,
        "decoded latent = x̂0 of the last model call (x_{N−1} − σ_{N−1}·v), not x_N",
        f"GCPO@{COMMITS['GCPO']} fastvideo/train_grpo_flux_hpsv3.py:{line} run_sample_step",
        diff(image_latent, x - sigmas[-2] * v),
        f"|x̂0 − x_N| = {diff(image_latent, z):.3g} (the last step's noise)",
    )


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--ref", default=str(Path("~/.cache/raygrpo/ref").expanduser()))
    p.add_argument("--out", default=str(ROOT / "bench/results/reference.json"))
    args = p.parse_args()
    ref = Path(args.ref)
    heads = {}
    for repo, commit in COMMITS.items():
        head = subprocess.run(
            ["git", "-C", str(ref / repo), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        if not head.startswith(commit):
            raise SystemExit(
                f"{ref / repo} is at {head or 'nothing'}, not {commit}: run bench/reference/fetch.sh"
            )
        heads[repo] = head
    torch.set_num_threads(1)
    results: list[dict] = []
    for group in (
        sde_checks,
        window_checks,
        chunk_checks,
        objective_checks,
        advantage_checks,
        window_schedule_checks,
        decode_checks,
    ):
        group(ref, results)
    out = Path(args.out)
    import platform

    setup = {
        "command": "python bench/reference/compare.py",
        "machine": f"{platform.machine()}, torch {torch.__version__}, CPU float32",
    }
    out.write_text(json.dumps({"setup": setup, "references": heads, "checks": results}, indent=2) + "\n")
    lines = [
        "Each reference function is loaded from its file at the commit named and run on the same inputs "
        "as ours.",
        "",
        "| check | reference | max abs diff | agrees | note |",
        "|---|---|---|---|---|",
    ]
    cell = lambda text: str(text).replace("|", "\\|")  # noqa: E731 (a note's |x| must not split the row)
    for r in results:
        agree = (
            "yes"
            if r["agree"] and r["tolerance"] != float("inf")
            else ("by design: no" if r["note"] else "NO")
        )
        lines.append(
            f"| {cell(r['check'])} | {cell(r['reference'])} | {r['max_abs_diff']:.2g} | {agree} "
            f"| {cell(r['note'])} |"
        )
    lines += [
        "",
        f"`{setup['command']}` on {setup['machine']}; references: "
        + ", ".join(f"{k}@{v[:7]}" for k, v in heads.items())
        + ".",
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(r["agree"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
