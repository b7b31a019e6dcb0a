"""Image preprocessing of the reward models, in PIL + numpy + torch (never torchvision).

The official ImageReward and HPSv3 code preprocess with torchvision on PIL images; for PIL
inputs torchvision calls PIL's own resize, so doing the same PIL calls with the same sizes
and offsets gives the same pixels. The sizes and offsets follow torchvision exactly:

    Resize(n) (int)   shorter side -> n, longer side -> int(n · long / short), PIL bicubic
    CenterCrop(n)     top = int(round((H − n) / 2)), left = int(round((W − n) / 2))
    ToTensor          uint8 / 255 as float32, [3, H, W]
    Normalize         (x − mean) / std per channel

and Qwen2-VL's pixel budget (qwen_vl_utils / hpsv3.dataset.utils.smart_resize):

    h̄, w̄ = round(h / 28)·28, round(w / 28)·28; if h̄·w̄ > max_pixels: β = sqrt(h·w / max_pixels),
    h̄, w̄ = floor(h / β / 28)·28, …; if < min_pixels: β = sqrt(min_pixels / (h·w)), ceil(h·β / 28)·28, …
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def to_pil(images: np.ndarray) -> list[Image.Image]:
    """uint8 [B, H, W, 3] -> B RGB PIL images (checks the scorer protocol's input)."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 [B, H, W, 3], got {images.dtype} {images.shape}")
    return [Image.fromarray(im, mode="RGB") for im in images]


def resize_shorter_side(image: Image.Image, size: int) -> Image.Image:
    """torchvision Resize(size) with an int size, bicubic, on a PIL image."""
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_w, new_h) == (w, h):
        return image
    return image.resize((new_w, new_h), Image.BICUBIC)


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """torchvision CenterCrop(size) on an image at least `size` on each side."""
    w, h = image.size
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def normalize(image: Image.Image, mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD) -> torch.Tensor:
    """ToTensor + Normalize: PIL RGB -> float32 [3, H, W]."""
    x = (
        torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1).float()
        / 255
    )
    mean_t = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    std_t = torch.tensor(std, dtype=torch.float32)[:, None, None]
    return (x - mean_t) / std_t


def clip_style(image: Image.Image, size: int = 224) -> torch.Tensor:
    """Resize(size, bicubic) -> CenterCrop(size) -> ToTensor -> Normalize(OpenAI CLIP): [3, size, size]."""
    return normalize(center_crop(resize_shorter_side(image, size), size))


def smart_resize(
    height: int,
    width: int,
    factor: int = 28,
    min_pixels: int = 4 * 28 * 28,
    max_pixels: int = 16384 * 28 * 28,
) -> tuple[int, int]:
    """(h, w) multiples of `factor` with h·w within [min_pixels, max_pixels], aspect kept."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio of {height}x{width} exceeds 200, which Qwen2-VL cannot take")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def resize_to_pixel_budget(image: Image.Image, min_pixels: int, max_pixels: int) -> Image.Image:
    """qwen_vl_utils.fetch_image for a PIL image: smart_resize, then PIL bicubic."""
    w, h = image.size
    new_h, new_w = smart_resize(h, w, min_pixels=min_pixels, max_pixels=max_pixels)
    return image.convert("RGB").resize((new_w, new_h), Image.BICUBIC)


def batches(n: int, size: int):
    """Slices covering range(n) in steps of `size`."""
    return [slice(lo, min(lo + size, n)) for lo in range(0, n, size)]
