"""FLUX.1-dev-size throughput on one GPU, unattended in under 8 minutes: rollout images/s, learner
step time and MFU, weight-sync time, HPSv3-size scorer images/s, peak memory of every phase.

    python bench/gpu_throughput.py                      # one GPU -> bench/results/gpu.json (+ gpu.md)
    python bench/gpu_throughput.py --tiny --out X.json  # scaled down, CPU: the same code path (CI)

Every phase's result is written as soon as it is measured (atomically: a temp file renamed), so
a crash or a timeout keeps what was measured; a failed phase records its error and the next one
runs. Models have random weights (nothing to download), built in bf16 directly on the device —
no float32 copy of the 12 B parameters ever exists — from FLUX.1-dev's real configs
(bench/memory_model.py); the tiny mode shrinks widths and depths, nothing else: bf16, gradient
checkpointing and LoRA run in both.

    rollout   the 16-step all-SDE plan (rollout.sampler.generate: transformer, SDE math, VAE
              decode in rollout.models.common.decode_batch chunks) at 512² and 720²: images/s over
              `--batch` images after one warm-up micro-batch
    learner   LearnerWorker.train (DeepSpeed ZeRO-2, 1 rank, LoRA r64, gradient checkpointing) on
              `--learner-samples` of the 720² rollouts × all 16 transitions; MFU from
              flux_forward_flops (below) against the GPU's dense bf16 peak; and the largest
              |log-ratio| of rollout (micro-batch --micro-batch) against the learner's
              recomputation (micro-batch --learner-micro-batch), in bf16 on this GPU: on the
              warm-up minibatch, before any optimizer step (numerics alone), and on the timed
              one, after the warm-up's step (lr 1e-6)
    sync      what a weight broadcast does at each end except the wire (one GPU has no peer):
              learner pack + checksum bucket by bucket, receiver copy-in + checksum; and
              LearnerWorker.publish (the object-store path: a CPU copy)
    scorer    HPSv3's model (Qwen2-VL-7B + rm_head, reward.hpsv3.HPSv3Model) on synthetic inputs of
              the real shapes (256 image tokens, ~600 text tokens): images/s at batch 16

FLOPs: bench/gpu_models.py flux_forward_flops.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from learner.config import LearnerConfig  # noqa: E402
from learner.engine import free_port  # noqa: E402
from learner.worker import LearnerWorker, Minibatch  # noqa: E402
from gpu_models import TINY_QWEN, build, flux_forward_flops, policy_at  # noqa: E402
from memory_model import QWEN2VL_7B, default_dtype  # noqa: E402
from rollout.plan import sde_plan  # noqa: E402
from rollout.sampler import generate  # noqa: E402
from rollout.sde import flux_resolution_shift  # noqa: E402
from rollout.weight_sync import Checksum, pack, plan_buckets, state_checksum, tensor_specs, unpack  # noqa: E402

PEAK_BF16 = {
    "H100": 989e12,
    "H200": 989e12,
    "H800": 989e12,
    "A100": 312e12,
    "A800": 312e12,
    "L40S": 362e12,
    "B200": 2250e12,
}  # dense bf16 tensor-core FLOP/s (vendor datasheets)


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def peak_memory(device: str) -> dict:
    if device == "cuda":
        return {
            "peak_allocated_gb": torch.cuda.max_memory_allocated() / 1e9,
            "peak_reserved_gb": torch.cuda.max_memory_reserved() / 1e9,
        }
    return {"process_rss_high_water_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9}


def rollout_phase(parts, resolution: int, args, device: str) -> tuple[dict, object]:
    policy = policy_at(parts, resolution, device)
    plan = sde_plan(
        args.steps,
        shift=flux_resolution_shift(policy.latent_shape[0]),
        noise_level=0.7,
        sde_kind="flow",
        train_last=True,
    )
    n, micro = args.batch, args.micro_batch
    prompts = [f"prompt {i // 4}" for i in range(n)]
    groups, seeds = [i // 4 for i in range(n)], list(range(100, 100 + n))
    with torch.no_grad():
        generate(
            policy, prompts[:micro], groups[:micro], plan, groups[:micro], seeds[:micro], 0, micro
        )  # warm-up
        synchronize(device)
        start = time.perf_counter()
        images, traj = generate(policy, prompts, groups, plan, groups, seeds, 0, micro_batch=micro)
        synchronize(device)
    seconds = time.perf_counter() - start
    return {
        "images_per_s": n / seconds,
        "seconds": seconds,
        "images": n,
        "latent_tokens": policy.latent_shape[0],
        "image_shape": list(images.shape[1:]),
    }, traj


def learner_phase(parts, traj, resolution: int, args, device: str) -> tuple[dict, LearnerWorker]:
    cfg_model = parts[0]
    policy = policy_at(parts, resolution, device)
    cfg = LearnerConfig(
        micro_batch=args.learner_micro_batch, num_gpus=1 if device == "cuda" else 0, torch_threads=2, lr=1e-6
    )
    learner = LearnerWorker(lambda device=None: policy, cfg, 0, 1)
    learner.setup("127.0.0.1", free_port())
    n = min(args.learner_samples, len(traj))
    adv = torch.randn(len(traj))
    warm = list(range(min(len(traj), max(1, n // 4))))
    # warm-up (DeepSpeed buffers, kernels); its ratios are the only ones taken before any optimizer step
    first = learner.train(traj, adv, [Minibatch(rows=warm, size=len(warm))])
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    batch = traj.select(list(range(len(traj) - n, len(traj))))  # samples the warm-up did not train on
    synchronize(device)
    start = time.perf_counter()
    stats = learner.train(batch, adv[:n], [Minibatch(rows=list(range(n)), size=n)])  # one optimizer step
    synchronize(device)
    seconds = time.perf_counter() - start
    transitions = n * batch.train_steps.shape[1]
    flops = 2 * transitions * flux_forward_flops(cfg_model, policy.latent_shape[0], parts[3].seq)
    peak = next(
        (v for k, v in PEAK_BF16.items() if device == "cuda" and k in torch.cuda.get_device_name()), None
    )

    def max_log_ratio(step: dict) -> float:
        return max(abs(math.log(step["ratio_min"])), abs(math.log(step["ratio_max"])))

    return {
        "step_s": seconds,
        "samples": n,
        "transitions": transitions,
        "model_tflops": flops / 1e12,
        "achieved_tflops_per_s": flops / seconds / 1e12,
        "mfu": flops / seconds / peak if peak else None,
        "max_abs_log_ratio_before_any_step": max_log_ratio(first),
        "max_abs_log_ratio_after_one_step": max_log_ratio(stats),
        "clip_range": cfg.clip_range,
        "rollout_micro_batch": args.micro_batch,
        "learner_micro_batch": args.learner_micro_batch,
        **peak_memory(device),
    }, learner


def sync_phase(learner: LearnerWorker, bucket_mb: float, device: str) -> dict:
    params = learner.policy.trainable_tensors()
    plan = plan_buckets(tensor_specs(params), int(bucket_mb * 2**20))
    synchronize(device)
    start = time.perf_counter()
    checksum = Checksum()
    packed = []
    for bucket in plan:  # the sender's side of LearnerWorker.broadcast_weights
        for spec in bucket:
            checksum.update(spec.name, params[spec.name])
        packed.append(pack(params, bucket))
        if len(packed) > 1:
            packed.pop(0)  # a real sender frees each bucket once broadcast
    digest = checksum.hexdigest()
    synchronize(device)
    send_s = time.perf_counter() - start
    target = {k: torch.empty_like(v) for k, v in params.items()}
    start = time.perf_counter()
    for bucket in plan:  # the receiver's side: copy each arriving bucket into its weights
        flat = pack(params, bucket)  # (stands in for the received buffer)
        for name, t in unpack(flat, bucket).items():
            target[name].copy_(t)
    same = state_checksum(target) == digest
    synchronize(device)
    receive_s = time.perf_counter() - start
    start = time.perf_counter()
    state, _ = learner.publish()
    publish_s = time.perf_counter() - start
    return {
        "megabytes": sum(t.numel() * t.element_size() for t in params.values()) / 2**20,
        "tensors": len(params),
        "buckets": len(plan),
        "sender_pack_checksum_s": send_s,
        "receiver_copy_checksum_s": receive_s,
        "checksums_equal": same,
        "publish_to_cpu_s": publish_s,
        "wire": "not measured (one GPU, no peer)",
    }


def scorer_phase(tiny: bool, device: str, batch: int = 16, repeats: int = 3) -> dict:
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    from reward.hpsv3 import HPSv3Model

    spec = TINY_QWEN if tiny else QWEN2VL_7B
    cfg = Qwen2VLConfig(
        text_config=spec["text"], vision_config=spec["vision"], image_token_id=spec["text"]["vocab_size"] - 2
    )
    width = spec["text"]["hidden_size"]
    with torch.device(device), default_dtype(torch.bfloat16):
        vlm = Qwen2VLForConditionalGeneration(cfg)
        head = torch.nn.Sequential(
            torch.nn.Linear(width, 1024),
            torch.nn.ReLU(),
            torch.nn.Dropout(0.0),
            torch.nn.Linear(1024, 16),
            torch.nn.ReLU(),
            torch.nn.Linear(16, 2),
        ).float()
    model = HPSv3Model(vlm, head, reward_token_id=spec["text"]["vocab_size"] - 1).eval()
    grid = 4 if tiny else 32  # 32 × 32 patches of 14 px: 448², HPSv3's pixel budget -> 256 merged tokens
    image_tokens, text_tokens = grid * grid // 4, 32 if tiny else 600
    ids = torch.randint(0, spec["text"]["vocab_size"] - 2, (batch, image_tokens + text_tokens), device=device)
    ids[:, 10 : 10 + image_tokens] = cfg.image_token_id
    ids[:, -1] = model.reward_token_id
    mask = torch.ones_like(ids)
    pixels = torch.randn(batch * grid * grid, 3 * 2 * 14 * 14, device=device)
    thw = torch.tensor([[1, grid, grid]] * batch, device=device)
    with torch.no_grad():
        model(ids, mask, pixels, thw)  # warm-up
        synchronize(device)
        start = time.perf_counter()
        for _ in range(repeats):
            out = model(ids, mask, pixels, thw)
        synchronize(device)
    seconds = time.perf_counter() - start
    return {
        "images_per_s": batch * repeats / seconds,
        "batch": batch,
        "sequence": image_tokens + text_tokens,
        "parameters_b": sum(p.numel() for p in model.parameters()) / 1e9,
        "output_shape": list(out.shape),
        **peak_memory(device),
    }


def save(result: dict, out: Path) -> None:
    """Atomic: a reader (or a crash) sees the previous complete file or the new one (JSON and table)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    for path, text in (
        (out, json.dumps(result, indent=2) + "\n"),
        (out.with_suffix(".md"), markdown(result)),
    ):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)


def markdown(result: dict) -> str:
    lines = ["| phase | result | peak memory GB | seconds |", "|---|---|---|---|"]
    keys = (
        "images_per_s",
        "step_s",
        "mfu",
        "achieved_tflops_per_s",
        "max_abs_log_ratio_before_any_step",
        "max_abs_log_ratio_after_one_step",
        "sender_pack_checksum_s",
        "receiver_copy_checksum_s",
        "publish_to_cpu_s",
        "megabytes",
        "error",
        "skipped",
    )
    for name, v in result["phases"].items():
        shown = ", ".join(
            f"{k} {v[k]:.4g}" if isinstance(v[k], float) else f"{k} {v[k]}"
            for k in keys
            if v.get(k) is not None
        )
        peak = v.get("peak_allocated_gb") or (v.get("peak") or {}).get("peak_allocated_gb")
        lines.append(
            f"| {name} | {shown} | {'' if peak is None else f'{peak:.1f}'} | {v.get('phase_s', 0):.1f} |"
        )
    return "\n".join(lines) + "\n"


def run_phase(result: dict, name: str, fn, start: float, budget_s: float, device: str, out: Path) -> None:
    """Run one phase unless the time budget is spent; record its figures or its error; save."""
    if time.perf_counter() - start > budget_s:
        result["phases"][name] = {"skipped": f"time budget of {budget_s} s spent"}
    else:
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        try:
            value = fn()
            result["phases"][name] = {**value, "phase_s": time.perf_counter() - t0}
            result["phases"][name].setdefault("peak", peak_memory(device))
        except Exception as err:  # keep going: what was measured stays measured
            result["phases"][name] = {
                "error": f"{type(err).__name__}: {err}",
                "trace": traceback.format_exc()[-2000:],
            }
    result["elapsed_s"] = time.perf_counter() - start
    save(result, out)
    print(f"{name}: {json.dumps(result['phases'][name], default=str)[:300]}", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="scaled-down widths and depths (a CPU smoke run, CI)")
    p.add_argument("--out", default="bench/results/gpu.json")
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--batch", type=int, default=16, help="images per timed rollout")
    p.add_argument("--micro-batch", type=int, default=8, help="rollout samples per transformer call")
    p.add_argument("--learner-samples", type=int, default=4, help="samples of the timed learner step")
    p.add_argument("--learner-micro-batch", type=int, default=2)
    p.add_argument("--resolutions", type=int, nargs="+", default=[512, 720])
    p.add_argument("--sync-bucket-mb", type=float, default=256)
    p.add_argument(
        "--budget-s", type=float, default=420, help="skip phases that would start after this (8 min total)"
    )
    args = p.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if not args.tiny and device != "cuda":
        sys.exit("gpu_throughput.py needs a GPU for the FLUX-size run; use --tiny for a CPU smoke run")
    os.environ.setdefault("DS_ACCELERATOR", "cpu" if device == "cpu" else "cuda")
    out, start = Path(args.out), time.perf_counter()
    result = {
        "setup": {
            "command": "python bench/gpu_throughput.py " + " ".join(sys.argv[1:]),
            "machine": torch.cuda.get_device_name() if device == "cuda" else f"CPU ({platform.machine()})",
            "torch": torch.__version__,
            "dtype": "bfloat16",
            "tiny": args.tiny,
            "steps": args.steps,
        },
        "phases": {},
    }
    save(result, out)
    state = {}

    def phase(name, fn):
        run_phase(result, name, fn, start, args.budget_s, device, out)

    def build_models():
        state["parts"] = build(args.tiny, device)
        return {"transformer_parameters_b": sum(p.numel() for p in state["parts"][1].parameters()) / 1e9}

    phase("build", build_models)
    for res in args.resolutions:

        def roll(res=res):
            value, state["traj"] = rollout_phase(state["parts"], res, args, device)
            state["resolution"] = res  # the learner trains on the last batch that was rolled out
            return value

        phase(f"rollout_{res}", roll)

    def learn():
        value, state["learner"] = learner_phase(
            state["parts"], state["traj"], state["resolution"], args, device
        )
        return value

    phase("learner", learn)
    phase("sync", lambda: sync_phase(state["learner"], args.sync_bucket_mb, device))
    state.clear()  # the FLUX weights go before the reward model comes
    if device == "cuda":
        torch.cuda.empty_cache()
    phase("scorer_hpsv3", lambda: scorer_phase(args.tiny, device))
    failed = [k for k, v in result["phases"].items() if "error" in v or "skipped" in v]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
