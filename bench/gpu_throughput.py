"""FLUX-size throughput: rollout images/s, learner step time, weight-sync time.

    python bench/gpu_throughput.py                      # on a GPU box -> bench/results/gpu.json
    python bench/gpu_throughput.py --tiny --out X.json  # scaled-down, CPU: checks the script runs

The policy is the real FLUX.1-dev architecture (FluxTransformer2DModel's defaults: 19 double +
38 single blocks, width 3072, guidance embedding; 12B parameters) and FLUX's VAE architecture,
with random weights (nothing to download), bf16, LoRA rank 64 on the attention projections as
the deploy configs train it. Text embeddings are random tensors of T5/CLIP's shapes: rollout
workers read them from the `raygrpo embed` cache and never run the text encoders.

    rollout   16-step all-SDE plan (rollout.sampler.generate: transformer, SDE math, VAE decode)
              at 512² and 720², images/s over `--batch` images (after one warm-up batch)
    learner   one LearnerWorker.train call (DeepSpeed ZeRO-2, 1 rank) on a rollout batch:
              recompute log-probs of every transition, clipped objective, backward, step
    sync      learner publish (trainable state to CPU + checksum) + rollout load_weights
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

from learner.config import LearnerConfig  # noqa: E402
from learner.engine import free_port  # noqa: E402
from learner.worker import LearnerWorker, Minibatch  # noqa: E402
from rollout.config import LoraConfig, ModelConfig  # noqa: E402
from rollout.models.common import setup_trainable  # noqa: E402
from rollout.models.flux import FluxPolicy  # noqa: E402
from rollout.plan import sde_plan  # noqa: E402
from rollout.sampler import generate  # noqa: E402
from rollout.sde import flux_resolution_shift  # noqa: E402

TINY_TRANSFORMER = dict(num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
                        joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=(4, 6, 6))
TINY_VAE = dict(block_out_channels=(8, 16), norm_num_groups=4)
FLUX_VAE = dict(block_out_channels=(128, 256, 512, 512), norm_num_groups=32)


class RandomText:
    """Stands in for the embedding cache: fixed random T5 / CLIP embeddings per prompt."""

    def __init__(self, seq: int, width: int, pooled: int):
        self.seq, self.width, self.pooled = seq, width, pooled

    def __call__(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(len(prompts))
        return {"prompt_embeds": torch.randn(len(prompts), self.seq, self.width, generator=g),
                "pooled": torch.randn(len(prompts), self.pooled, generator=g)}


def build_policy(tiny: bool, resolution: int, dtype: torch.dtype, device: str) -> FluxPolicy:
    from diffusers import AutoencoderKL, FluxTransformer2DModel

    torch.manual_seed(0)
    with torch.device(device):
        transformer = FluxTransformer2DModel(**(dict(in_channels=16, **TINY_TRANSFORMER) if tiny else {}),
                                             guidance_embeds=True).to(dtype)
        blocks = TINY_VAE if tiny else FLUX_VAE
        n = len(blocks["block_out_channels"])
        vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
                            up_block_types=("UpDecoderBlock2D",) * n, layers_per_block=1 if tiny else 2,
                            latent_channels=transformer.config.in_channels // 4, use_quant_conv=False,
                            use_post_quant_conv=False, scaling_factor=0.3611, shift_factor=0.1159, **blocks).to(dtype)
    options = ModelConfig(finetune="lora", lora=LoraConfig(rank=4 if tiny else 64, alpha=8 if tiny else 128),
                          gradient_checkpointing=not tiny)
    names = setup_trainable(transformer, options, default="lora")
    cfg = transformer.config
    text = RandomText(32 if tiny else 512, cfg.joint_attention_dim, cfg.pooled_projection_dim)
    return FluxPolicy(transformer, vae, text, resolution, 3.5, dtype, names).to(device)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def rollout_rate(policy, steps: int, batch: int, micro: int, device: str):
    """(images/s, plan, one rollout batch) for the all-SDE plan of `steps` steps."""
    plan = sde_plan(steps, shift=flux_resolution_shift(policy.latent_shape[0]), noise_level=0.7, sde_kind="flow",
                    train_last=True)
    prompts = [f"prompt {i // 4}" for i in range(batch)]
    args = (prompts, [i // 4 for i in range(batch)], plan, list(range(batch)), list(range(100, 100 + batch)), 0)
    generate(policy, prompts[:micro], args[1][:micro], plan, args[3][:micro], args[4][:micro], 0, micro)  # warm-up
    sync(device)
    start = time.perf_counter()
    _, traj = generate(policy, *args, micro_batch=micro)
    sync(device)
    return batch / (time.perf_counter() - start), traj


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="scaled-down model and images (a CPU smoke run)")
    p.add_argument("--out", default="bench/results/gpu.json")
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--batch", type=int, default=16, help="images per timed rollout")
    p.add_argument("--micro-batch", type=int, default=8)
    p.add_argument("--resolutions", type=int, nargs="+", default=[512, 720])
    args = p.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if not args.tiny and device != "cuda":
        sys.exit("gpu_throughput.py needs a GPU for the FLUX-size run; use --tiny for a CPU smoke run")
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    os.environ.setdefault("DS_ACCELERATOR", "cpu" if device == "cpu" else "cuda")
    result = {"device": torch.cuda.get_device_name() if device == "cuda" else f"CPU ({platform.machine()})",
              "tiny": args.tiny, "steps": args.steps, "batch": args.batch, "micro_batch": args.micro_batch,
              "dtype": str(dtype).removeprefix("torch."), "torch": torch.__version__, "rollout": {}}

    policy = None
    for res in args.resolutions:
        policy = build_policy(args.tiny, res, dtype, device)
        policy.requires_grad_(False)
        rate, traj = rollout_rate(policy, args.steps, args.batch, args.micro_batch, device)
        result["rollout"][str(res)] = {"images_per_s": round(rate, 3), "latent_tokens": policy.latent_shape[0]}
        print(f"rollout {res}²: {rate:.2f} images/s", flush=True)
        del policy
        if device == "cuda":
            torch.cuda.empty_cache()

    # learner: one update on the last resolution's batch, through DeepSpeed as in the actor system
    res = args.resolutions[-1]
    cfg = LearnerConfig(micro_batch=args.micro_batch, num_gpus=1 if device == "cuda" else 0, torch_threads=2)
    learner = LearnerWorker(lambda: build_policy(args.tiny, res, dtype, device), cfg, 0, 1)
    learner.setup("127.0.0.1", free_port())
    adv = torch.randn(len(traj))
    warm = list(range(min(len(traj), args.micro_batch)))
    learner.train(traj, adv, [Minibatch(rows=warm, size=len(warm))])  # warm-up
    sync(device)
    start = time.perf_counter()
    learner.train(traj, adv, [Minibatch(rows=list(range(len(traj))), size=len(traj))])  # one optimizer step
    sync(device)
    result["learner"] = {"step_s": round(time.perf_counter() - start, 3), "samples": len(traj),
                         "transitions_per_sample": traj.train_steps.shape[1], "resolution": res}
    print(f"learner step: {result['learner']['step_s']:.2f}s", flush=True)

    # sync: publish from the learner, load into a rollout-side policy
    target = build_policy(args.tiny, res, dtype, device)
    start = time.perf_counter()
    state, checksum = learner.publish()
    target.load_trainable_state(state)
    assert target.state_checksum(target.trainable_state()) == checksum
    sync(device)
    megabytes = sum(t.numel() * t.element_size() for t in state.values()) / 2**20
    result["sync"] = {"seconds": round(time.perf_counter() - start, 3), "megabytes": round(megabytes, 2),
                      "tensors": len(state)}
    print(f"weight sync: {result['sync']['seconds']:.2f}s for {megabytes:.1f} MiB", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
