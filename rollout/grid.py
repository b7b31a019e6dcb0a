"""Image grids for sample previews (PIL only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def image_grid(images: np.ndarray, cols: int, scale: int = 4, pad: int = 2) -> Image.Image:
    """uint8 [B, H, W, 3] -> one RGB image, `cols` per row, upscaled `scale`x (nearest)."""
    b, h, w, _ = images.shape
    rows = -(-b // cols)
    hs, ws = h * scale, w * scale
    canvas = Image.new("RGB", (cols * (ws + pad) + pad, rows * (hs + pad) + pad), (255, 255, 255))
    for i, img in enumerate(images):
        tile = Image.fromarray(img).resize((ws, hs), Image.NEAREST)
        canvas.paste(tile, (pad + (i % cols) * (ws + pad), pad + (i // cols) * (hs + pad)))
    return canvas


def save_grid(images: np.ndarray, path: str | Path, cols: int, scale: int = 4) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image_grid(images, cols, scale).save(path)
    return path
