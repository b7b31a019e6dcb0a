"""`raygrpo profile`: the temporal dynamics of the base model, for Chunk-GRPO's chunking.

ODE rollouts of the base policy over a prompt set; L1_rel(i) = mean over prompts of
‖x_{i+1} − x_i‖₁ / ‖x_i‖₁ for each transition; the chunk sizes `dynamics_chunks` proposes
for K chunks; all written to DIR/profile.json with a plot DIR/profile.png. Name the JSON
in a config as learner.chunks.profile (mode: dynamics, and weighted chunk sampling).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from learner.chunking import dynamics_chunks, relative_l1
from orchestrator.config import Config
from rollout.policy import load_policy
from rollout.sampler import derive_seed, ode_latents
from rollout.worker import DTYPES


def profile(cfg: Config, prompts: list[str], out: Path, *, num_chunks: list[int], seed: int = 0,
            samples_per_prompt: int = 2, batch: int = 64) -> dict:
    policy = load_policy(cfg.model.path, dtype=DTYPES[cfg.model.dtype])
    batch_prompts = [p for p in prompts for _ in range(samples_per_prompt)]
    seeds = [derive_seed(seed, 11, i) for i in range(len(batch_prompts))]
    total, count = None, 0
    for lo in range(0, len(batch_prompts), batch):
        latents = ode_latents(policy, batch_prompts[lo:lo + batch], seeds[lo:lo + batch],
                              num_steps=cfg.rollout.num_steps, shift=cfg.rollout.shift)  # [b, N+1, ...]
        part = relative_l1(latents) * len(latents)  # sum over this batch
        total, count = (part if total is None else total + part), count + len(latents)
    l1_rel = (total / count).tolist()
    result = {
        "model": cfg.model.path, "num_steps": cfg.rollout.num_steps, "shift": cfg.rollout.shift,
        "prompts": len(prompts), "samples_per_prompt": samples_per_prompt, "seed": seed,
        "l1_rel": l1_rel,
        "proposed_chunks": {str(k): dynamics_chunks(l1_rel, k) for k in num_chunks if k <= len(l1_rel)},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "profile.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot(l1_rel, result["proposed_chunks"], out / "profile.png")
    return result


def _plot(l1_rel: list[float], proposals: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    steps = list(range(len(l1_rel)))
    ax.plot(steps, l1_rel, marker="o", color="black", label="L1_rel")
    if proposals:
        k, sizes = max(proposals.items(), key=lambda kv: int(kv[0]))
        edge = 0
        for size in sizes[:-1]:
            edge += size
            ax.axvline(edge - 0.5, color="tab:red", linestyle="--", linewidth=1)
        ax.set_title(f"temporal dynamics; dashed: {k} chunks {sizes}")
    ax.set_xlabel("transition i")
    ax.set_ylabel("mean ‖x_{i+1} − x_i‖₁ / ‖x_i‖₁")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
