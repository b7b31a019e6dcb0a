"""Oracle step 2 (the side venv: transformers 4.45.2, torch 2.14.1, torchvision 0.29.1, and the
official `hpsv3` and `image-reward` packages): score the same files with the official code.

    cd /tmp/raygrpo_oracle && HF_HUB_OFFLINE=1 ORACLE_VENV/bin/python .../reference.py --work .

Imports nothing of raygrpo. The official loaders read the files as they are: HPSv3 through
HPSv3RewardInferencer (its YAML with model_name_or_path -> the tiny base, float32 on CPU),
ImageReward through ImageReward.load(ImageReward.pt, med_config=...), whose tokenizer is
BertTokenizer.from_pretrained('bert-base-uncased') — found as the local directory of that name.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def hps_config(work: Path) -> Path:
    """The official HPSv3_7B.yaml, pointed at the tiny base and made CPU-float32."""
    import hpsv3
    import yaml

    cfg = yaml.safe_load((Path(hpsv3.__file__).parent / "config" / "HPSv3_7B.yaml").read_text())
    cfg.update(
        model_name_or_path=str(work / "qwen_base"),
        bf16=False,
        torch_dtype="float32",
        disable_flash_attn2=True,
        output_dir=str(work / "hps_out"),
        report_to="none",
        dataloader_num_workers=0,
        gradient_checkpointing=False,
    )
    path = work / "HPSv3_tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--work", default=".")
    args = p.parse_args()
    work = Path(args.work).resolve()
    os.chdir(work)  # 'bert-base-uncased' resolves to ./bert-base-uncased
    torch.set_num_threads(2)
    prompts = json.loads((work / "prompts.json").read_text())
    images = [Image.open(work / "images" / f"{i}.png").convert("RGB") for i in range(len(prompts))]
    out: dict[str, np.ndarray] = {}

    from hpsv3 import HPSv3RewardInferencer

    hps = HPSv3RewardInferencer(
        config_path=str(hps_config(work)),
        checkpoint_path=str(work / "hps" / "HPSv3.safetensors"),
        device="cpu",
    )
    with torch.no_grad():
        out["hpsv3"] = np.array(
            [hps.reward([im], [q])[0][0].item() for im, q in zip(images, prompts)], np.float32
        )
        for i, (im, q) in enumerate(zip(images, prompts)):
            batch = hps.prepare_batch([im], [q])
            out[f"hpsv3_pixels_{i}"] = batch["pixel_values"].numpy()
            out[f"hpsv3_ids_{i}"] = batch["input_ids"][0].numpy()

    import ImageReward as RM

    model = RM.load(
        str(work / "imagereward" / "ImageReward.pt"),
        device="cpu",
        med_config=str(work / "imagereward" / "med_config.json"),
    )
    state = torch.load(work / "imagereward" / "ImageReward.pt", map_location="cpu")
    missing = sorted(set(model.state_dict()) - set(state))  # the official load is strict=False: check it
    with torch.no_grad():
        out["imagereward"] = np.array([model.score(q, im) for im, q in zip(images, prompts)], np.float32)
        for i, im in enumerate(images):
            out[f"imagereward_pixels_{i}"] = model.preprocess(im).numpy()
    np.savez(work / "reference.npz", **out)
    import importlib.metadata as md

    meta = {
        "packages": {
            name: md.version(name)
            for name in (
                "torch",
                "torchvision",
                "transformers",
                "hpsv3",
                "image-reward",
                "timm",
                "tokenizers",
            )
        },
        "imagereward_keys_missing_from_checkpoint": missing,
    }
    (work / "reference.json").write_text(json.dumps(meta, indent=1))
    print("reference:", {k: out[k].round(5).tolist() for k in ("hpsv3", "imagereward")}, flush=True)


if __name__ == "__main__":
    main()
