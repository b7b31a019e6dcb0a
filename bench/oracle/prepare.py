"""Oracle step 1 (our venv): write the shared tiny checkpoints and images, score them with ours.

    python bench/oracle/prepare.py --work /tmp/raygrpo_oracle

Writes under --work: qwen_base/ + hps/HPSv3.safetensors (tiny HPSv3), imagereward/ (ImageReward.pt
at the official ViT-L/16 size, BERT text 768 wide with 2 layers, med_config.json),
bert-base-uncased/ (a tiny vocab under the name the official code asks for), images/*.png,
prompts.json, and ours.npz / ours.json (scores and preprocessed tensors).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from reward.hpsv3 import HPSv3Scorer  # noqa: E402
from reward.imagereward import IMAGE_SIZE, ImageRewardScorer  # noqa: E402
from reward.preprocess import clip_style  # noqa: E402
from tests.fixtures.reward_models import write_hpsv3, write_imagereward  # noqa: E402

# (height, width): square generator sizes, non-square ones, and odd crop margins
SIZES = [(512, 512), (720, 720), (200, 300), (383, 257), (225, 230), (64, 64)]
PROMPTS = [
    "a red circle at the top left on a blue background",
    "a photo of a cat on a green background",
    "A cute chibi fox, smiling, sticker art",
    "",
    "the blue square at the center",
    "a very long prompt " + "with many repeated words " * 12,
]


def make_images(rng: np.random.Generator) -> list[np.ndarray]:
    """Smooth gradients + a bright disc + noise: content that resampling can get wrong."""
    images = []
    for h, w in SIZES:
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        base = np.stack([yy, xx, 1 - yy], -1) * 200 + rng.normal(0, 20, (h, w, 3))
        disc = ((yy - 0.4) ** 2 + (xx - 0.55) ** 2) < 0.05
        base[disc] = [250, 220, 30]
        images.append(np.clip(base, 0, 255).astype(np.uint8))
    return images


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--work", default="/tmp/raygrpo_oracle")
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    start = time.time()
    base, hps = write_hpsv3(work / "qwen_base", work / "hps", seed=0)
    ir = write_imagereward(
        work / "imagereward",
        seed=0,
        vision_width=1024,
        vision_depth=24,
        text_width=768,
        text_layers=2,
        text_heads=12,
    )
    shutil.copytree(ir / "tokenizer", work / "bert-base-uncased", dirs_exist_ok=True)
    images = make_images(np.random.default_rng(0))
    (work / "images").mkdir(exist_ok=True)
    for i, im in enumerate(images):
        Image.fromarray(im).save(work / "images" / f"{i}.png")
    (work / "prompts.json").write_text(json.dumps(PROMPTS, indent=1))
    print(f"checkpoints and images written in {time.time() - start:.0f}s", flush=True)

    out: dict[str, np.ndarray] = {}
    hps_scorer = HPSv3Scorer(str(hps), base=str(base), batch_size=2)
    ir_scorer = ImageRewardScorer(str(ir), base=str(ir / "tokenizer"), batch_size=2)
    # one image at a time: the images differ in size (a batch of one size is what the scorers get)
    out["hpsv3"] = np.concatenate([hps_scorer.score(im[None], [q]) for im, q in zip(images, PROMPTS)])
    out["imagereward"] = np.concatenate([ir_scorer.score(im[None], [q]) for im, q in zip(images, PROMPTS)])
    for i, (im, q) in enumerate(zip(images, PROMPTS)):
        pil = Image.fromarray(im)
        out[f"imagereward_pixels_{i}"] = clip_style(pil, IMAGE_SIZE).numpy()
        ids, mask, pixels, thw = hps_scorer.inputs([pil], [q])
        out[f"hpsv3_pixels_{i}"], out[f"hpsv3_ids_{i}"] = pixels.numpy(), ids[0].numpy()
    np.savez(work / "ours.npz", **out)
    import transformers

    meta = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "seconds": round(time.time() - start, 1),
    }
    (work / "ours.json").write_text(json.dumps(meta, indent=1))
    print("ours:", {k: out[k].round(5).tolist() for k in ("hpsv3", "imagereward")}, flush=True)


if __name__ == "__main__":
    main()
