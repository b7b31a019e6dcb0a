"""Pretrain a tiny model (shapes or text world) with the rectified-flow loss.

    python -m rollout.tiny.pretrain                     # the shipped shapes weights (seed 0)
    python -m rollout.tiny.pretrain --world text ...   # the shipped text weights: two stages, each
                                       # stage's command in weights_text/raygrpo_model.json
    python -m rollout.tiny.pretrain --world text --caption-noise 0.4 --steps 2000 --batch 32 \
        --warmup 100 --ema 0.995 --out /tmp/text_cn   # a base that mixes up characters with their
                                       # twins (text_world's caption noise; ~8 min on 2 cores)
    python -m rollout.tiny.pretrain --steps 300 --out /tmp/tiny   # a quick smoke run

Data are rendered on the fly from the *train* prompts (held-out combinations are never
seen). Loss: x_σ = (1−σ)·x0 + σ·ε, target v = ε − x0, MSE; σ drawn like the sampling
schedule (uniform s, shifted by 3). AdamW with warmup + cosine decay; the EMA weights are
saved. The held-out validation loss (fixed σ grid and noise) is printed as it goes and
recorded in raygrpo_model.json with the command and seed. Bit-exact reproduction needs
the same torch build and thread count (2 on the machines that made the shipped weights).
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from rollout.models.tiny import TinyPolicy, TinyTextEncoder
from rollout.models.base import Conditioning, Policy
from rollout.tiny import model as tiny_model
from rollout.tiny import text_world, world

# world -> (module with prompts(split), renderer (prompts, rng) -> uint8 [B, H, W, 3])
WORLDS = {
    "shapes": (world, lambda prompts, rng: world.render([world.parse_prompt(p) for p in prompts], rng)),
    "text": (text_world, text_world.render_prompts),
}


def text_conditioning(policy: Policy, prompts: list[str]) -> Conditioning:
    """Conditioning *with* gradients into the text encoder (pretraining trains it)."""
    tokens = policy.tokenizer(
        prompts,
        padding="max_length",
        max_length=policy.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    out = policy.text_model(input_ids=tokens.input_ids)
    return Conditioning({"prompt_embeds": out.last_hidden_state, "pooled": out.pooler_output})


def flow_loss(policy: Policy, prompts, x0, noise, sigma) -> torch.Tensor:
    s = sigma[:, None, None]
    x = (1 - s) * x0 + s * noise  # [B, L, D]
    velocity = policy.velocity(x, sigma, text_conditioning(policy, prompts))
    return ((velocity - (noise - x0)) ** 2).mean()


def validation_set(prompts: list[str], seed: int, per_prompt: int = 4, render=WORLDS["shapes"][1]):
    """Fixed held-out batch: renders, noise and a σ grid (the same every evaluation)."""
    rng = np.random.default_rng(seed)
    prompts = [p for p in prompts for _ in range(per_prompt)]
    images = render(prompts, rng)
    gen = torch.Generator().manual_seed(seed)
    sigma = (torch.arange(len(prompts)) % 10 + 0.5) / 10  # σ in {0.05, …, 0.95}
    return prompts, images, gen, sigma


@torch.no_grad()
def validation_loss(policy: Policy, val) -> float:
    prompts, images, gen, sigma = val
    x0 = policy.encode_images(images)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(gen.initial_seed()))
    return flow_loss(policy, prompts, x0, noise, sigma).item()


def lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(args) -> None:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    module, render = WORLDS[args.world]
    train_render = render
    if args.caption_noise:
        train_render = functools.partial(text_world.render_captioned, p=args.caption_noise)
    tokenizer, text_encoder, transformer = tiny_model.build(args.seed, args.world)
    txt_ids = tiny_model.text_ids(args.world)
    if args.init:  # continue from a saved model (a second stage; the command of each stage is recorded)
        tokenizer, text_encoder, transformer = tiny_model.load(Path(args.init))
        txt_ids = tiny_model.saved_text_ids(json.loads((Path(args.init) / "raygrpo_model.json").read_text()))
    policy = TinyPolicy(
        transformer,
        TinyTextEncoder(text_encoder, tokenizer),
        tiny_model.image_shape(args.world),
        txt_ids=txt_ids,
    )
    policy.text_model.requires_grad_(True).train()
    params = [p for p in policy.parameters() if p.requires_grad]
    ema = copy.deepcopy(policy).requires_grad_(False)
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01, betas=(0.9, 0.99))
    train_prompts, heldout = module.prompts("train"), module.prompts("heldout")
    val = validation_set(heldout, args.seed + 1, render=render)
    rng = np.random.default_rng(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    start = time.time()
    for step in range(args.steps):
        prompts = [train_prompts[i] for i in rng.integers(len(train_prompts), size=args.batch)]
        x0 = policy.encode_images(train_render(prompts, rng))
        noise = torch.randn(x0.shape, generator=gen)
        s = torch.rand(args.batch, generator=gen)
        sigma = 3 * s / (1 + 2 * s)  # the shift-3 schedule's density
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args.steps, args.lr, args.warmup)
        loss = flow_loss(policy, prompts, x0, noise, sigma)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            for e, p in zip(ema.parameters(), policy.parameters()):
                e.lerp_(p, 1 - args.ema)
        if step % args.log_every == 0 or step == args.steps - 1:
            val_loss = validation_loss(ema, val)
            print(
                f"step {step:5d}  loss {loss.item():.4f}  heldout(ema) {val_loss:.4f}  "
                f"{time.time() - start:6.0f}s",
                flush=True,
            )
        if args.save_every and step and step % args.save_every == 0:
            out = Path(args.snapshots) / f"step_{step:05d}" if args.snapshots else Path(args.out)
            _save(ema, args, step, validation_loss(ema, val), time.time() - start, out)
    _save(ema, args, args.steps, validation_loss(ema, val), time.time() - start, Path(args.out))


def _save(policy: Policy, args, step: int, val_loss: float, seconds: float, out: Path) -> None:
    info = {
        "produced_by": "python -m rollout.tiny.pretrain " + " ".join(sys.argv[1:]),
        "seed": args.seed,
        "steps": step,
        "batch": args.batch,
        "threads": args.threads,
        **({"caption_noise": args.caption_noise} if args.caption_noise else {}),
        "torch": torch.__version__,
        "heldout_flow_loss": round(val_loss, 5),
        **({"init": _init_record(args.init)} if args.init else {}),
        "train_seconds": round(seconds),
        **(
            {"snapshot": f"step {step} of this {args.steps}-step run (the EMA weights then)"}
            if step < args.steps
            else {}
        ),
    }
    txt_ids = (
        policy.txt_ids if policy.txt_ids is not None else torch.zeros(policy.tokenizer.model_max_length, 3)
    )
    tiny_model.save(out, policy.tokenizer, policy.text_model, policy.transformer, info, args.world, txt_ids)
    print(f"saved step {step} to {out}", flush=True)


def _init_record(path: str) -> dict:
    """Where a continued run started: the init model's own record (its command, seed, steps)."""
    meta = json.loads((Path(path) / "raygrpo_model.json").read_text())
    return {
        k: meta[k]
        for k in (
            "produced_by",
            "seed",
            "steps",
            "batch",
            "threads",
            "caption_noise",
            "heldout_flow_loss",
            "init",
        )
        if k in meta
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", choices=tuple(WORLDS), default="shapes")
    p.add_argument("--out", help="weights directory (default: the shipped one of --world)")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--ema", type=float, default=0.998)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", help="start from this saved tiny model (same world) instead of random weights")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--caption-noise",
        type=float,
        default=0.0,
        help="text world: each character of a training render is its twin with this probability "
        "(text_world.TWINS, e.g. text_world.CAPTION_NOISE; default 0: clean renders, as the shipped weights)",
    )
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--save-every", type=int, default=500)
    p.add_argument(
        "--snapshots", help="write every --save-every snapshot to DIR/step_NNNNN instead of over --out"
    )
    args = p.parse_args(argv)
    if args.caption_noise and args.world != "text":
        p.error("--caption-noise applies to --world text only (the shapes world has no characters)")
    if not 0 <= args.caption_noise <= 1:
        p.error(f"--caption-noise {args.caption_noise} is a probability: give a value in [0, 1]")
    args.out = args.out or str(
        tiny_model.WEIGHTS_DIR if args.world == "shapes" else tiny_model.TEXT_WEIGHTS_DIR
    )
    train(args)


if __name__ == "__main__":
    main()
