"""GPU memory of every actor of every deploy config, at real model sizes, measured without a GPU.

    # every deploy/configs/*.yaml with GPUs -> bench/results/memory.{json,md}
    python bench/memory.py
    # also: the tracker against a real CPU run of a scaled-down FLUX
    python bench/memory.py --validate
    # one config, overridden
    python bench/memory.py --config deploy/configs/flux_dance_grpo.yaml learner.micro_batch=2

Per actor, in GB (10^9 bytes); P = transformer parameters, T = trainable ones, N = learner ranks:

  weights      the transformer (+ the VAE on rollout workers) in model.dtype, built on the meta device
               from its real config (bench/memory_model.py). ZeRO-3: P/N per rank, plus its two largest
               blocks gathered (the one computing, the one prefetched).
  grads        the rank's gradient partition: 4·T/N (fp32, accumulated over a step's backward passes)
               + DeepSpeed's reduce buckets, 2 × BUCKET_ELEMENTS in bf16. ZeRO-Offload moves the
               partition to CPU memory with the optimizer (buckets only on the GPU).
  optimizer    fp32 master weights + Adam m and v: 12·T/N; with learner.offload_optimizer 0 on the
               GPU, and 16·T/N of host RAM a rank (`host_ram_gb`).
  reference    full fine-tune with kl_coef > 0: a frozen bf16 copy of the transformer (LoRA: 0, adapters off).
  activations  measured: the peak of one forward + backward (learner) or forward (rollout) of the real
               architecture on the meta device (flash attention, as bf16 FLUX / SD3 get on a GPU), at 1
               and 2 rows, extrapolated linearly to the config's rows. Learner rows per forward =
               max(micro_batch, the widest chunk) (a pass packs model inputs up to micro_batch and
               never splits a chunk: a Chunk-GRPO chunk of 7 transitions runs as one call of 7) × 2
               under SD3's CFG; rollout rows = micro_batch (E-GRPO: the prompts of one call × their
               members, + the anchors) × 2 under CFG.
  vae decode   measured: one decode call of rollout.models.common.decode_batch images at the resolution.
  scorer       reward model weights (meta count) in bf16 + activations B·S·(3·I + 6·D)·2 bytes (one
               layer's MLP and residual stream at batch B, sequence S, width D, MLP width I).
  overhead     2 GB a process: CUDA context, cuBLAS / NCCL workspaces.
A GPU fits when the sum of its actors is at most 95 % of its memory (the caching allocator's
fragmentation): 80 GB (A100 / H100) and 141 GB (H200).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from learner.engine import BUCKET_ELEMENTS  # noqa: E402
from memory_model import (
    ARCHS,
    GB,
    QWEN2VL_7B,
    TEXT_TOKENS,
    build_transformer,
    build_vae,
    peak_bytes,  # noqa: E402
    reward_parameters,
    transformer_inputs,
)
from learner.config import chunk_selector  # noqa: E402
from orchestrator.config import build_plan, load_config  # noqa: E402
from rollout.models.common import decode_batch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CAPACITIES = {"80GB": 80, "141GB": 141}
USABLE = 0.95
OVERHEAD = 2.0
# reward model activations: (sequence length, width D, MLP width I); HPSv3: 256 image tokens + the
# instruction and prompt (~600 tokens); CLIP / ImageReward: their vision towers at 224 px
SCORER_SHAPES = {
    "hpsv3": (856, QWEN2VL_7B["text"]["hidden_size"], QWEN2VL_7B["text"]["intermediate_size"]),
    "clip": (257, 1024, 4096),
    "imagereward": (197, 1024, 4096),
}
_measured: dict = {}


def per_row(key: tuple, measure) -> tuple[float, float]:
    """(intercept, bytes per row) of a measurement linear in rows, from rows 1 and 2 (cached)."""
    if key not in _measured:
        one, two = measure(1), measure(2)
        _measured[key] = (2 * one - two, two - one)
    return _measured[key]


def transformer_for(cfg, train: bool):
    """(family, arch config, meta transformer set up as the config trains it)."""
    from rollout.models.common import setup_trainable

    family, arch, _, _ = ARCHS[cfg.model.path]
    module = build_transformer(family, arch)
    if train:
        setup_trainable(module, cfg.model, default="lora")
    else:
        module.requires_grad_(False)
    return family, arch, module


def activations(cfg, rows: int, train: bool) -> float:
    family, arch, _, _ = ARCHS[cfg.model.path]
    text = TEXT_TOKENS[family](cfg.model.max_sequence_length)
    res = cfg.model.resolution or 1024
    finetune = cfg.model.finetune or "lora"
    checkpointing = cfg.model.gradient_checkpointing and train
    key = (
        cfg.model.path,
        res,
        text,
        train,
        finetune,
        checkpointing,
        cfg.model.lora.rank,
        tuple(cfg.model.lora.targets),
    )

    def measure(n: int) -> float:
        _, _, module = transformer_for(cfg, train)
        return peak_bytes(module, transformer_inputs(family, arch, n, res, text), train=train)

    intercept, slope = per_row(key, measure)
    return (intercept + slope * rows) / GB


def vae_peak(cfg) -> tuple[float, int, float]:
    """(VAE weights GB, images per decode call, decode peak GB)."""
    _, _, vae_cfg, _ = ARCHS[cfg.model.path]
    vae = build_vae(vae_cfg)
    res = cfg.model.resolution or 1024
    batch = decode_batch(vae, res, res)
    key = ("vae", cfg.model.path, res, batch)
    if key not in _measured:
        z = torch.randn(
            batch, vae_cfg["latent_channels"], res // 8, res // 8, device="meta", dtype=torch.bfloat16
        )
        _measured[key] = peak_bytes(_Decoder(vae), {"z": z}, train=False)
    return sum(p.numel() for p in vae.parameters()) * 2 / GB, batch, _measured[key] / GB


class _Decoder(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, z):
        return self.vae.decode(z, return_dict=False)[0]


def widest_chunk(cfg, plan) -> int:
    """Transitions of the widest chunk a sample trains (learner.chunking.ChunkSelector): E-GRPO
    trains one window step a member; 'adaptive' chunks are at most `stop_size` long."""
    if plan.windows:
        return 1
    trained = sum(plan.at(0).trainable)
    selector = chunk_selector(cfg.learner)
    if selector.mode == "adaptive":
        return min(trained, selector.stop_size)
    return max(selector.layouts(torch.zeros(1, trained))[0])


def learner_rows(cfg, plan) -> int:
    # a pass packs (sample, chunk) units up to micro_batch model inputs; a chunk is never split,
    # so a wider one runs alone (learner.schedule.pack_units)
    return max(cfg.learner.micro_batch, widest_chunk(cfg, plan)) * (2 if _cfg_doubles(cfg) else 1)


def rollout_rows(cfg, plan) -> int:
    micro = cfg.rollout.micro_batch
    if plan.windows:
        prompts = max(1, micro // cfg.rollout.group_size)
        micro = prompts * plan.members_per_group(cfg.rollout.group_size) + prompts
    return micro * (2 if _cfg_doubles(cfg) else 1)


def _cfg_doubles(cfg) -> bool:
    family = ARCHS[cfg.model.path][0]
    return family == "sd3" and (cfg.model.guidance_scale if cfg.model.guidance_scale is not None else 4.5) > 1


def counts(cfg) -> dict:
    """Transformer parameters, trainable parameters, and the largest block's parameters."""
    _, _, module = transformer_for(cfg, train=True)
    blocks = [
        b for name in ("transformer_blocks", "single_transformer_blocks") for b in getattr(module, name, [])
    ]
    return {
        "params": sum(p.numel() for p in module.parameters()),
        "trainable": sum(p.numel() for p in module.parameters() if p.requires_grad),
        "largest_block": max(sum(p.numel() for p in b.parameters()) for b in blocks),
    }


def learner_rank(cfg, plan, n: dict) -> dict:
    lc, bytes_ = cfg.learner, 2 if cfg.model.dtype != "float32" else 4
    ranks, p, t = lc.world_size, n["params"], n["trainable"]
    zero3 = lc.zero_stage == 3
    weights = (0 if lc.offload_params else p / ranks) if zero3 else p
    weights = weights * bytes_ + (2 * n["largest_block"] * bytes_ if zero3 else 0)
    rows = learner_rows(cfg, plan)
    out = {
        "weights": weights / GB,
        "grads": ((0 if lc.offload_optimizer else 4 * t / ranks) + 2 * 2 * BUCKET_ELEMENTS) / GB,
        "optimizer": 0.0 if lc.offload_optimizer else 12 * t / ranks / GB,
        "reference": p * bytes_ / GB
        if (lc.kl_coef > 0 and (cfg.model.finetune or "lora") == "full")
        else 0.0,
        "activations": activations(cfg, rows, train=True),
        "overhead": OVERHEAD,
    }
    cpu = (16 * t / ranks if lc.offload_optimizer else 0) + (p * bytes_ / ranks if lc.offload_params else 0)
    return {
        "role": "learner",
        "count": ranks,
        "gpus": lc.num_gpus,
        "rows_per_forward": rows,
        "breakdown": out,
        "total": sum(out.values()),
        "host_ram_gb": cpu / GB,
    }


def rollout_worker(cfg, plan, n: dict) -> dict:
    vae_weights, batch, decode = vae_peak(cfg)
    rows = rollout_rows(cfg, plan)
    out = {
        "weights": n["params"] * 2 / GB + vae_weights,
        "activations": activations(cfg, rows, train=False),
        "vae_decode": decode,
        "overhead": OVERHEAD,
    }
    # activations and the decode never overlap: the larger of the two is what the worker needs
    out["total_note"] = "weights + max(activations, vae_decode) + overhead"
    total = out["weights"] + max(out["activations"], out["vae_decode"]) + out["overhead"]
    return {
        "role": "rollout",
        "count": cfg.rollout.num_workers,
        "gpus": cfg.rollout.num_gpus,
        "rows_per_forward": rows,
        "decode_batch": batch,
        "breakdown": out,
        "total": total,
    }


def scorer_worker(s) -> dict:
    params = reward_parameters(s.kind) if s.kind in SCORER_SHAPES else 0
    seq, width, mlp = SCORER_SHAPES.get(s.kind, (0, 0, 0))
    out = {
        "weights": params * 2 / GB,
        "activations": s.batch_size * seq * (3 * mlp + 6 * width) * 2 / GB,
        "overhead": OVERHEAD if params else 0.0,
    }
    return {
        "role": f"reward:{s.name}",
        "count": 1,
        "gpus": s.num_gpus,
        "breakdown": out,
        "total": sum(out.values()),
    }


def pack(actors: list[dict]) -> list[dict]:
    """GPUs in use: whole-GPU actors one each, fractional ones first-fit (as Ray packs them)."""
    gpus: list[dict] = []
    for a in actors:
        for _ in range(a["count"]):
            if a["gpus"] >= 1:
                gpus.append({"actors": [a["role"]], "used": a["gpus"], "gb": a["total"]})
                continue
            spot = next((g for g in gpus if g["used"] + a["gpus"] <= 1 + 1e-9 and g["used"] < 1), None)
            if spot is None:
                spot = {"actors": [], "used": 0.0, "gb": 0.0}
                gpus.append(spot)
            spot["actors"].append(a["role"])
            spot["used"] += a["gpus"]
            spot["gb"] += a["total"]
    for g in gpus:
        g["fits"] = {name: g["gb"] <= cap * USABLE for name, cap in CAPACITIES.items()}
    return gpus


def analyse(name: str, cfg) -> dict:
    plan = build_plan(cfg)
    n = counts(cfg)
    actors = [
        rollout_worker(cfg, plan, n),
        *(scorer_worker(s) for s in cfg.reward.scorers),
        learner_rank(cfg, plan, n),
    ]
    gpus = pack(actors)
    lc = cfg.learner
    return {
        "config": name,
        "model": cfg.model.path,
        "finetune": cfg.model.finetune or "lora",
        "resolution": cfg.model.resolution or 1024,
        "params": n["params"],
        "trainable": n["trainable"],
        "learner": {
            "world_size": lc.world_size,
            "zero_stage": lc.zero_stage,
            "micro_batch": lc.micro_batch,
            "offload_optimizer": lc.offload_optimizer,
            "offload_params": lc.offload_params,
            "gradient_checkpointing": cfg.model.gradient_checkpointing,
        },
        "actors": actors,
        "gpus": gpus,
        "fits": {cap: all(g["fits"][cap] for g in gpus) for cap in CAPACITIES},
    }


def table(results: list[dict]) -> str:
    lines = [
        "| config | actor | × | rows | weights | grads | optimizer | reference | activations | VAE decode "
        "| total GB | fits 80 / 141 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for a in r["actors"]:
            b = a["breakdown"]
            fit = [all(g["fits"][c] for g in r["gpus"] if a["role"] in g["actors"]) for c in CAPACITIES]
            cell = lambda k: f"{b[k]:.1f}" if k in b else ""  # noqa: E731
            lines.append(
                f"| {r['config']} | {a['role']} | {a['count']} | {a.get('rows_per_forward', '')} | "
                f"{cell('weights')} | {cell('grads')} | {cell('optimizer')} | {cell('reference')} | "
                f"{cell('activations')} | {cell('vae_decode')} | {a['total']:.1f} | "
                f"{'/'.join('yes' if f else 'NO' for f in fit)} |"
            )
    return "\n".join(lines) + "\n"


def gpu_configs(paths: list[str], overrides: list[str]) -> list[tuple[str, object]]:
    out = []
    for path in paths:
        cfg = load_config(path, overrides)
        if cfg.learner.num_gpus > 0 and cfg.model.path in ARCHS:
            out.append((Path(path).name, cfg))
        elif cfg.learner.num_gpus > 0:
            print(f"skip {path}: no architecture for model.path {cfg.model.path!r} in bench/memory_model.py")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--config", action="append", help="deploy config(s) (default: every deploy/configs/*.yaml)"
    )
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides applied to every config")
    p.add_argument("--out", default="bench/results/memory")
    p.add_argument("--validate", action="store_true", help="check the tracker against a real CPU run")
    args = p.parse_args()
    torch.set_num_threads(min(4, os.cpu_count() or 1))
    paths = args.config or [str(q) for q in sorted((ROOT / "deploy" / "configs").glob("*.yaml"))]
    start = time.time()
    results = []
    for name, cfg in gpu_configs(paths, args.overrides):
        results.append(analyse(name, cfg))
        print(
            f"{name}: fits 80 GB {results[-1]['fits']['80GB']}, 141 GB {results[-1]['fits']['141GB']} "
            f"({time.time() - start:.0f} s)",
            flush=True,
        )
    out = {
        "setup": {
            "command": "python bench/memory.py " + " ".join(sys.argv[1:]),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores (meta device: no GPU needed)",
            "torch": torch.__version__,
            "usable_fraction": USABLE,
            "overhead_gb": OVERHEAD,
        },
        "configs": results,
    }
    if args.validate:
        from memory_validate import validate

        out["validation"] = validate()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps(out, indent=1) + "\n")
    md = table(results)
    if "validation" in out:
        v = out["validation"]
        md += (
            f"\nTracker check (scaled-down FLUX, {v['model']}): meta {v['meta_mb']:.1f} MB, real CPU "
            f"{v['cpu_mb']:.1f} MB (same tracker), process RSS growth {v['rss_mb']:.1f} MB.\n"
        )
    Path(args.out + ".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
