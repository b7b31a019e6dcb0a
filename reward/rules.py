"""Rule-based rewards for the embedded shapes task, computed from pixels; each in [0, 1].

The judge keeps its own meaning of the prompt's words (canonical hue names, positions as
fractions of the image, shapes as signed-distance templates) and imports nothing from the
generator, as a real reward model knows nothing of the data pipeline.

Per image, shared by both scorers (numpy, vectorised over B):
    background  per-channel median colour                       # the object covers < 10 %
    weight w    clip((|x - background| - 0.20) / 0.15, 0, 1)   # soft foreground mask [B, H, W]
    area        sum(w) in pixels
`alignment` = mean of four posteriors that the image shows what the prompt says:
    background hue, object hue (core colour, weights w⁴; von Mises over six hues, sharper for more chroma),
    position (Gaussian over the five named places, std 0.09 of the side),
    shape (softmax over soft-IoU with a circle / square / triangle template of the
    measured area, centred on the measured centroid, temperature 0.02).
`preference` = clip((area / pixels - 0.040) / (0.100 - 0.040), 0, 1): a taste for big
objects that the prompts never state. It ignores the prompt, so like HPS it can be gamed
by images that stop matching it (colour smeared beyond the object).
"""

from __future__ import annotations

import re

import numpy as np

HUES = {"red": 0.0, "yellow": 60.0, "green": 120.0, "cyan": 180.0, "blue": 240.0, "magenta": 300.0}
PLACES = {  # (row, col) as fractions of the image side
    "top left": (0.25, 0.25),
    "top right": (0.25, 0.75),
    "bottom left": (0.75, 0.25),
    "bottom right": (0.75, 0.75),
    "center": (0.5, 0.5),
}
TEMPLATES = ("circle", "square", "triangle")
HUE_SHARPNESS = 30.0  # von Mises concentration per unit of chroma
PLACE_STD = 0.09
SHAPE_TEMPERATURE = 0.02
MIN_OBJECT_PIXELS = 4.0
# Distance from the background colour (RGB in [0, 1]) at which a pixel starts / fully counts
# as object. Every palette pair differs by >= 0.35 even when shaded, so objects count fully,
# while faint texture (which a policy can learn to paint on the background) does not.
FOREGROUND_RAMP = (0.20, 0.35)
PREFERRED_COVERAGE = (0.040, 0.100)  # coverage scoring 0 … 1

_PROMPT = re.compile(r"^a (\w+) (\w+) at the (.+) on a (\w+) background$")


def parse(prompt: str) -> tuple[str, str, str, str]:
    """(object colour, shape, place, background colour) named by a shapes prompt."""
    m = _PROMPT.match(prompt.strip())
    ok = m and m[1] in HUES and m[2] in TEMPLATES and m[3] in PLACES and m[4] in HUES
    if not ok:
        raise ValueError(
            f"alignment cannot read prompt {prompt!r}: expected 'a <colour> <shape> at the "
            f"<place> on a <colour> background' with colours {list(HUES)}, shapes "
            f"{list(TEMPLATES)}, places {list(PLACES)}"
        )
    return m[1], m[2], m[3], m[4]


def _as_float(images: np.ndarray) -> np.ndarray:
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 [B, H, W, 3], got {images.dtype} {images.shape}")
    return images.astype(np.float32) / 255.0


def foreground(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Soft foreground weights [B, H, W] and background colour [B, 3] of images in [0, 1]."""
    background = np.median(x.reshape(len(x), -1, 3), axis=1)  # [B, 3]
    dist = np.linalg.norm(x - background[:, None, None, :], axis=-1)  # [B, H, W]
    return np.clip(
        (dist - FOREGROUND_RAMP[0]) / (FOREGROUND_RAMP[1] - FOREGROUND_RAMP[0]), 0.0, 1.0
    ), background


def _hue_posterior(rgb: np.ndarray) -> np.ndarray:
    """[B, 3] colours -> [B, 6] posterior over HUES (von Mises in hue, scaled by chroma)."""
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    hue = np.arctan2(np.sqrt(3.0) * (g - b), 2 * r - g - b)  # [B] radians
    chroma = rgb.max(axis=1) - rgb.min(axis=1)  # [B]
    centres = np.deg2rad(np.array(list(HUES.values())))  # [6]
    logits = HUE_SHARPNESS * chroma[:, None] * np.cos(hue[:, None] - centres[None, :])
    return _softmax(logits)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _templates(area: np.ndarray, centroid: np.ndarray, size: int) -> np.ndarray:
    """Soft masks [B, 3, H, W] of each template with `area` pixels centred on `centroid`."""
    coords = np.arange(size, dtype=np.float32) + 0.5
    dy = coords[None, :, None] - centroid[:, 0, None, None]  # [B, H, 1]
    dx = coords[None, None, :] - centroid[:, 1, None, None]  # [B, 1, W]
    a = np.maximum(area, 1.0)[:, None, None]
    # Signed distances (positive inside), turned into one-pixel soft edges.
    circle = np.sqrt(a / np.pi) - np.sqrt(dy**2 + dx**2)
    square = np.sqrt(a) / 2 - np.maximum(np.abs(dy), np.abs(dx))
    h = np.sqrt(2 * a)  # upward triangle, base = height, centroid 2h/3 below the apex
    depth = dy + 2 * h / 3
    triangle = np.minimum(np.minimum(depth, h - depth), (depth / 2 - np.abs(dx)) / np.sqrt(1.25))
    sdf = np.stack(np.broadcast_arrays(circle, square, triangle), axis=1)
    return np.clip(sdf + 0.5, 0.0, 1.0)


def _scene_measurements(images: np.ndarray):
    x = _as_float(images)
    w, background = foreground(x)
    area = w.sum(axis=(1, 2))  # [B]
    safe = np.maximum(area, 1e-6)
    core = w**4  # the object's colour from its core, not the edges blended with the background
    colour = (core[..., None] * x).sum(axis=(1, 2)) / np.maximum(core.sum(axis=(1, 2)), 1e-6)[:, None]
    size = x.shape[1]
    coords = np.arange(size, dtype=np.float32) + 0.5
    cy = (w.sum(axis=2) * coords).sum(axis=1) / safe
    cx = (w.sum(axis=1) * coords).sum(axis=1) / safe
    return x, w, background, area, colour, np.stack([cy, cx], axis=1)


class AlignmentScorer:
    """Prompt faithfulness in [0, 1]: mean posterior of background, colour, place and shape."""

    name = "alignment"

    @staticmethod
    def validate_prompts(prompts: list[str]) -> None:
        """Raise ValueError naming the first prompt outside the grammar `parse` reads, and how
        many are; cheap (no images), so the driver checks prompt files before any actor starts."""
        bad = []
        for p in prompts:
            try:
                parse(p)
            except ValueError as err:
                bad.append(err)
        if bad:
            raise ValueError(
                f"{len(bad)} of {len(prompts)} prompts are outside the alignment grammar; first: {bad[0]}"
            )

    def score(self, images: np.ndarray, prompts: list[str]) -> np.ndarray:
        x, w, background, area, colour, centroid = _scene_measurements(images)
        if len(prompts) != len(x):
            raise ValueError(f"{len(prompts)} prompts for {len(x)} images")
        wanted = [parse(p) for p in prompts]
        rows = np.arange(len(x))
        hue_names = list(HUES)
        p_bg = _hue_posterior(background)[rows, [hue_names.index(s[3]) for s in wanted]]
        p_colour = _hue_posterior(colour)[rows, [hue_names.index(s[0]) for s in wanted]]

        size = x.shape[1]
        places = np.array(list(PLACES.values())) * size  # [5, 2]
        d2 = ((centroid[:, None, :] - places[None]) ** 2).sum(-1) / (PLACE_STD * size) ** 2
        p_place = _softmax(-0.5 * d2)[rows, [list(PLACES).index(s[2]) for s in wanted]]

        masks = _templates(area, centroid, size)  # [B, 3, H, W]
        inter = np.minimum(masks, w[:, None]).sum(axis=(2, 3))
        union = np.maximum(masks, w[:, None]).sum(axis=(2, 3))
        iou = inter / np.maximum(union, 1e-6)  # [B, 3]
        p_shape = _softmax(iou / SHAPE_TEMPERATURE)[rows, [TEMPLATES.index(s[1]) for s in wanted]]

        found = area >= MIN_OBJECT_PIXELS
        object_terms = np.where(found, p_colour + p_place + p_shape, 0.0)
        return ((p_bg + object_terms) / 4.0).astype(np.float32)


class PreferenceScorer:
    """A taste for large objects, in [0, 1]; ignores the prompt (see module docstring)."""

    name = "preference"

    def score(self, images: np.ndarray, prompts: list[str] | None = None) -> np.ndarray:
        x = _as_float(images)
        w, _ = foreground(x)
        coverage = w.mean(axis=(1, 2))  # [B]
        lo, hi = PREFERRED_COVERAGE
        return np.clip((coverage - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
