"""How much of an E-GRPO update is the reward's slope: signal and noise per column, on a
shipped base model (why the text task learns slowly, bench/results/recipe_text.md).

    python bench/column_snr.py [--world text|shapes] [--prompts 8] [--repeats 16]
        [--reward ocr|ocr_likelihood|preference|alignment] [--out bench/results/column_snr.json]
    python bench/column_snr.py --resummarise --out RESULT.json    (the summary again, from its rows)

Both worlds run tiny_text.yaml's plan (E-GRPO's windows on 12 steps, groups of 8), so only the
model and the reward differ: text = `tiny:text` with an OCR reward, shapes = `tiny` with a rule
reward (the shapes default's preference, which its runs raise in a few iterations).

A member i of E-GRPO column (k, e) trains one transition whose input x_k the whole column
shares (ALGORITHMS.md §2.3-2.5). Its gradient is A_i·∇θ log p(x_e^i | x_k) = A_i·(ε_i / std)·∂μ/∂θ
with the same ∂μ/∂θ for every member, so one column's update moves the policy's mean μ(x_k)
along the advantage-weighted noise

    g = (1/G) Σ_i A_i ε_i        a vector over the latent's D dims; A = the column's z-scores

— a zeroth-order estimate of the reward's slope in latent space (Stein: E[r(ε)·ε] = E[∇r]).
R columns drawn independently from the same x_k give

    total  = mean_r |g_r|²                   what the update follows
    signal = mean_{r ≠ s} g_r · g_s          an unbiased estimate of |E g|², the slope

so signal / total is the share of the update that is the reward's slope. It cannot be large:
a reward exactly linear in ε (r = w·ε, the best case) gives (`linear_ceiling`)

    signal / total = (G − 1)·c4(G)² / (G + D − 2)          c4(G) = E[s] / σ of G normal draws

(1.1e-3 for G = 8 on the text world's D = 6144 latent dims), so the table also reads each share
as a fraction of that ceiling; the rest is noise
that the optimiser follows all the same. Both are split over the latent dims on the glyphs
(the ground-truth render's foreground, dilated, reward/fidelity.py's mask) and on the
background, whose slope should be ~0: the background's noise is what a long run walks into
texture. `null` repeats `signal` with each column's advantages permuted among its members
(an estimator check: it must be ~0).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from learner.advantages import group_advantages  # noqa: E402
from orchestrator.config import build_plan, load_config  # noqa: E402
from reward.fidelity import DILATE, FOREGROUND_DISTANCE, _dilate  # noqa: E402
from reward.ocr import PPOCRv4LikelihoodScorer, PPOCRv4Scorer  # noqa: E402
from reward.rules import AlignmentScorer, PreferenceScorer  # noqa: E402
from rollout.policy import load_policy  # noqa: E402
from rollout.sampler import derive_seed, noise_from_seeds, run_windows  # noqa: E402
from rollout.tiny import model as tiny_model  # noqa: E402
from rollout.tiny import text_world, world  # noqa: E402

CONFIG = "deploy/configs/tiny_text.yaml"
SCORERS = {
    "ocr": lambda: PPOCRv4Scorer(batch_size=4, threads=2),
    "ocr_likelihood": lambda: PPOCRv4LikelihoodScorer(batch_size=4, threads=2),
    "preference": PreferenceScorer,
    "alignment": AlignmentScorer,
}
WORLDS = {  # model path, prompts, ground-truth render of one prompt, the rewards that fit
    "text": (
        "tiny:text",
        text_world.prompts,
        lambda p: text_world.render_prompts([p], np.random.default_rng(0))[0],
    ),
    "shapes": ("tiny", world.prompts, lambda p: world.render_prompts([p], 0)[0]),
}
REWARDS = {"text": ("ocr", "ocr_likelihood"), "shapes": ("preference", "alignment")}


def glyph_mask(truth: np.ndarray) -> torch.Tensor:
    """Latent-layout bool [L, D]: dims whose pixel is on the ground truth's foreground (dilated)."""
    x = truth / 255.0
    median = np.median(x.reshape(-1, 3), axis=0)
    fg = _dilate((np.linalg.norm(x - median, axis=-1) > FOREGROUND_DISTANCE)[None], DILATE)[0]
    pixels = torch.as_tensor(np.repeat(fg[..., None], 3, axis=-1), dtype=torch.float32)
    return tiny_model.patchify(pixels[None])[0] > 0.5


def linear_ceiling(group: int, dims: int) -> float:
    """The signal share of a reward linear in ε (module docstring)."""
    c4 = math.sqrt(2 / (group - 1)) * math.exp(math.lgamma(group / 2) - math.lgamma((group - 1) / 2))
    return (group - 1) * c4**2 / (group + dims - 2)


def column_direction(rewards: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """g = (1/G) Σ_i A_i ε_i per column: rewards [K, G], eps [K, G, ...] -> [K, ...], A the
    learner's own per-column advantages (learner/advantages.py group_advantages)."""
    k, g = rewards.shape
    columns = torch.arange(k).repeat_interleave(g)
    adv = group_advantages(rewards.reshape(-1).double(), columns).view(k, g)
    return torch.einsum("kg,kg...->k...", adv, eps) / g


def pair_mean(g: torch.Tensor) -> float:
    """mean over r ≠ s of g_r · g_s for g [R, D] (unbiased |E g|²)."""
    r = len(g)
    s = g.sum(0)
    return float(((s @ s) - (g * g).sum()) / (r * (r - 1)))


def column_stats(g: torch.Tensor, g_null: torch.Tensor, mask: torch.Tensor) -> dict:
    """Per region: total, signal, null of g [R, L, D] (sums over the region's dims)."""
    out = {}
    for name, m in (("glyphs", mask), ("background", ~mask), ("all", torch.ones_like(mask))):
        gr, gn = g[:, m], g_null[:, m]
        out[name] = {
            "total": float((gr * gr).sum(1).mean()),
            "signal": pair_mean(gr),
            "null": pair_mean(gn),
            "dims": int(m.sum()),
        }
    return out


def measure(world_name: str, prompts, repeats: int, reward: str) -> dict:
    cfg = load_config(CONFIG)
    plan = build_plan(cfg)
    g_size = cfg.rollout.group_size
    policy = load_policy(WORLDS[world_name][0])
    scorer = SCORERS[reward]()
    windows = list(plan.windows)
    k, shape = len(windows), policy.latent_shape
    rows = []
    for p_i, prompt in enumerate(prompts):
        cond = policy.encode([prompt])
        x = noise_from_seeds([derive_seed(0, p_i)], shape)
        gs, gn, stds, means = [], [], [], []
        for r in range(repeats):
            seeds = [derive_seed(1, p_i, r, m) for m in range(k * g_size)]
            _, _, x0 = run_windows(policy, cond, x, plan, seeds, g_size)
            rewards = torch.as_tensor(scorer.score(policy.decode(x0), [prompt] * len(seeds))).view(k, g_size)
            eps = noise_from_seeds(seeds, shape).view(k, g_size, *shape)
            shuffle = torch.randperm(g_size, generator=torch.Generator().manual_seed(r))
            gs.append(column_direction(rewards, eps))
            gn.append(column_direction(rewards[:, shuffle], eps))
            stds.append(rewards.std(1))
            means.append(rewards.mean(1))
        g, g_null, mask = (
            torch.stack(gs),
            torch.stack(gn),
            glyph_mask(WORLDS[world_name][2](prompt)),
        )  # [R, K, L, D]
        for c, (s, e) in enumerate(windows):
            rows.append(
                {
                    "prompt": prompt,
                    "window": [s, e],
                    "reward_mean": float(torch.stack(means)[:, c].mean()),
                    "reward_std": float(torch.stack(stds)[:, c].mean()),
                    **column_stats(g[:, c], g_null[:, c], mask),
                }
            )
        print(f"prompt {p_i + 1}/{len(prompts)} done", flush=True)
    return {"windows": windows, "group_size": g_size, "rows": rows}


def summarise(rows: list[dict], windows, group: int) -> list[dict]:
    """Per window, sums over prompts (each prompt's slope is its own; the ratios pool them)."""
    out = []
    for window in [*windows, None]:  # None: every window pooled
        part = [r for r in rows if window is None or r["window"] == list(window)]
        tot = {
            reg: {q: sum(r[reg][q] for r in part) for q in ("total", "signal", "null")}
            for reg in ("glyphs", "background", "all")
        }
        out.append(
            {
                "window": None if window is None else list(window),
                "reward_std": round(float(np.mean([r["reward_std"] for r in part])), 4),
                "signal_share": round(tot["all"]["signal"] / tot["all"]["total"], 4),
                "signal_share_se": round(  # across prompts: each prompt's share, std / √P
                    float(
                        np.std([r["all"]["signal"] / r["all"]["total"] for r in part], ddof=1)
                        / np.sqrt(len(part))
                    ),
                    4,
                ),
                "null_share": round(tot["all"]["null"] / tot["all"]["total"], 4),
                "of_linear_ceiling": round(
                    tot["all"]["signal"]
                    / tot["all"]["total"]
                    / linear_ceiling(group, part[0]["all"]["dims"]),
                    3,
                ),
                "signal_share_glyphs": round(tot["glyphs"]["signal"] / tot["glyphs"]["total"], 4),
                "signal_share_background": round(tot["background"]["signal"] / tot["background"]["total"], 4),
                "background_share_of_signal": round(tot["background"]["signal"] / tot["all"]["signal"], 4),
                "background_share_of_noise": round(
                    (tot["background"]["total"] - tot["background"]["signal"])
                    / (tot["all"]["total"] - tot["all"]["signal"]),
                    4,
                ),
            }
        )
    return out


def markdown(result: dict) -> str:
    lines = [
        "| window (k, e) | within-column reward std | signal share ± s.e. | of the linear ceiling "
        "| null share | signal share on glyphs | on background | background's share of the signal "
        "| of the noise |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for w in result["summary"]:
        lines.append(
            f"| {'all, pooled' if w['window'] is None else tuple(w['window'])} | {w['reward_std']:.3f} "
            f"| {w['signal_share']:.4f} ± {w['signal_share_se']:.4f} "
            f"| {w['of_linear_ceiling']:.2f} | {w['null_share']:.4f} "
            f"| {w['signal_share_glyphs']:.3f} | {w['signal_share_background']:.3f} "
            f"| {w['background_share_of_signal']:.2f} | {w['background_share_of_noise']:.2f} |"
        )
    s = result["setup"]
    lines += [
        "",
        f"`{s['command']}` — world {s['world']}, {s['prompts']} train prompts × {s['repeats']} "
        "independent columns per window, "
        f"groups of {s['group_size']}, reward `{s['reward']}`, tiny_text.yaml's plan; {s['wall_s']} s. "
        f"Machine: {s['machine']}. Method: the module docstring of bench/column_snr.py.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--repeats", type=int, default=16)
    p.add_argument("--world", choices=sorted(WORLDS), default="text")
    p.add_argument("--reward", choices=sorted(SCORERS), help="default: the world's first of REWARDS")
    p.add_argument("--out", type=Path, default=Path("bench/results/column_snr.json"))
    p.add_argument("--resummarise", action="store_true", help="rewrite --out's summary and .md from its rows")
    args = p.parse_args()
    if args.resummarise:
        result = json.loads(args.out.read_text())
        result["summary"] = summarise(result["rows"], result["windows"], result["group_size"])
        args.out.write_text(json.dumps(result, indent=1))
        args.out.with_suffix(".md").write_text(markdown(result))
        return
    reward = args.reward or REWARDS[args.world][0]
    if reward not in REWARDS[args.world]:
        p.error(f"--reward {reward} does not score the {args.world} world; use one of {REWARDS[args.world]}")
    if args.repeats < 2:
        p.error("--repeats must be >= 2 (the signal is a mean over pairs of repeats)")
    torch.set_num_threads(1)
    start = time.time()
    prompts = WORLDS[args.world][1]("train")[: args.prompts]
    result = measure(args.world, prompts, args.repeats, reward)
    result["summary"] = summarise(result["rows"], result["windows"], result["group_size"])
    result["setup"] = {
        "command": "python bench/column_snr.py " + " ".join(sys.argv[1:]),
        "prompts": args.prompts,
        "repeats": args.repeats,
        "group_size": result["group_size"],
        "world": args.world,
        "reward": reward,
        "wall_s": round(time.time() - start),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
