"""Shapes world: the embedded text-to-image task the tiny model is pretrained on.

A prompt names four attributes, e.g. "a red circle at the top left on a blue background":
object colour, shape, position and background colour. The renderer draws that scene with
nuisance variation the prompt does not fix, as real captions leave most of an image
unsaid:

    area    object area in pixels, uniform in [AREA_MIN, AREA_MAX]   (what `preference` likes)
    jitter  object centre offset, uniform in ±JITTER pixels per axis
    shade   object colour × U[0.70, 1.00], background colour × U[0.80, 1.00]

Images are IMAGE_SIZE² RGB uint8, anti-aliased by 2× supersampling. Everything here is
numpy and vectorised over the batch; the rule-based judge lives in `reward/rules.py` and
keeps its own notion of the words (it imports nothing from here, by design).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SIZE = 32
AREA_MIN, AREA_MAX = 30.0, 90.0
JITTER = 1.5
OBJECT_SHADE = (0.70, 1.00)
BACKGROUND_SHADE = (0.80, 1.00)
SUPERSAMPLE = 2

# Six saturated hues, 60° apart.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "yellow": (230, 210, 40),
    "green": (40, 190, 60),
    "cyan": (40, 200, 220),
    "blue": (50, 70, 230),
    "magenta": (210, 50, 210),
}
SHAPES = ("circle", "square", "triangle")
# (row, col) centres in pixels of a 32 x 32 image.
POSITIONS: dict[str, tuple[float, float]] = {
    "top left": (8.0, 8.0),
    "top right": (8.0, 24.0),
    "bottom left": (24.0, 8.0),
    "bottom right": (24.0, 24.0),
    "center": (16.0, 16.0),
}
PROMPT_DIR = Path(__file__).parent
HELDOUT_FRACTION = 0.1
SPLIT_SEED = 0


@dataclass(frozen=True)
class Scene:
    colour: str
    shape: str
    position: str
    background: str

    @property
    def prompt(self) -> str:
        return f"a {self.colour} {self.shape} at the {self.position} on a {self.background} background"


def parse_prompt(prompt: str) -> Scene:
    """Inverse of `Scene.prompt`; raises ValueError naming the prompt if it is not in the world."""
    words = prompt.strip().split()
    try:
        assert words[0] == "a" and words[3:5] == ["at", "the"] and words[-1] == "background"
        on = words.index("on")
        scene = Scene(words[1], words[2], " ".join(words[5:on]), words[on + 2])
        assert scene.colour in COLOURS and scene.shape in SHAPES
        assert scene.position in POSITIONS and scene.background in COLOURS
    except (AssertionError, IndexError, ValueError):
        raise ValueError(
            f"prompt {prompt!r} is not a shapes-world prompt; expected "
            "'a <colour> <shape> at the <position> on a <colour> background' with "
            f"colours {list(COLOURS)}, shapes {list(SHAPES)}, positions {list(POSITIONS)}"
        ) from None
    return scene


def all_scenes() -> list[Scene]:
    """Every (colour, shape, position, background) with background != object colour."""
    return [
        Scene(c, s, p, b) for c, s, p, b in itertools.product(COLOURS, SHAPES, POSITIONS, COLOURS) if b != c
    ]


def split_prompts() -> tuple[list[str], list[str]]:
    """The fixed (train, heldout) split: a seeded HELDOUT_FRACTION of combinations is held out."""
    prompts = [s.prompt for s in all_scenes()]
    rng = random.Random(SPLIT_SEED)
    heldout = set(rng.sample(prompts, round(HELDOUT_FRACTION * len(prompts))))
    return [p for p in prompts if p not in heldout], [p for p in prompts if p in heldout]


def prompt_file(split: str) -> Path:
    """Path of the packaged `train.txt` or `heldout.txt` (`tiny:train` / `tiny:heldout`,
    orchestrator/prompts.py)."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    return PROMPT_DIR / f"{split}.txt"


def prompts(split: str) -> list[str]:
    """The train or held-out prompts, as `prompt_file(split)` holds them (pretraining's data)."""
    prompt_file(split)  # checks the split's name
    train, heldout = split_prompts()
    return heldout if split == "heldout" else train


def _shape_masks(shape_idx, area, centre, grid):
    """Coverage masks [B, S, S] in {0,1} on the supersampled grid (coordinates in pixels)."""
    rows, cols = grid  # [S, S] each
    cy = centre[:, 0, None, None]
    cx = centre[:, 1, None, None]
    a = area[:, None, None]
    dy, dx = rows - cy, cols - cx
    circle = dy**2 + dx**2 <= a / np.pi
    half = np.sqrt(a) / 2
    square = (np.abs(dy) <= half) & (np.abs(dx) <= half)
    # Upward isosceles triangle with base b = height h, area b²/2, centred on its centroid.
    h = np.sqrt(2 * a)
    top = -2 * h / 3  # apex lies 2/3 of the height above the centroid
    depth = dy - top  # 0 at the apex, h at the base
    triangle = (depth >= 0) & (depth <= h) & (np.abs(dx) <= depth / 2)
    stacked = np.stack([circle, square, triangle], axis=1)  # [B, 3, S, S]
    return stacked[np.arange(len(shape_idx)), shape_idx]


def render(scenes: list[Scene], rng: np.random.Generator) -> np.ndarray:
    """Render scenes with fresh nuisance variation: uint8 [B, IMAGE_SIZE, IMAGE_SIZE, 3]."""
    n = len(scenes)
    colour = np.array([COLOURS[s.colour] for s in scenes], dtype=np.float32) / 255.0
    background = np.array([COLOURS[s.background] for s in scenes], dtype=np.float32) / 255.0
    colour *= rng.uniform(*OBJECT_SHADE, size=(n, 1)).astype(np.float32)
    background *= rng.uniform(*BACKGROUND_SHADE, size=(n, 1)).astype(np.float32)
    area = rng.uniform(AREA_MIN, AREA_MAX, size=n)
    centre = np.array([POSITIONS[s.position] for s in scenes]) + rng.uniform(-JITTER, JITTER, (n, 2))
    shape_idx = np.array([SHAPES.index(s.shape) for s in scenes])

    size = IMAGE_SIZE * SUPERSAMPLE
    coords = (np.arange(size) + 0.5) / SUPERSAMPLE
    grid = np.meshgrid(coords, coords, indexing="ij")
    mask = _shape_masks(shape_idx, area, centre, grid).astype(np.float32)  # [B, S, S]
    mask = mask.reshape(n, IMAGE_SIZE, SUPERSAMPLE, IMAGE_SIZE, SUPERSAMPLE).mean(axis=(2, 4))
    mask = mask[..., None]  # [B, H, W, 1]
    image = mask * colour[:, None, None, :] + (1 - mask) * background[:, None, None, :]
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def render_prompts(prompts: list[str], seed: int) -> np.ndarray:
    """Ground-truth renders of prompts, nuisance drawn from `seed`."""
    return render([parse_prompt(p) for p in prompts], np.random.default_rng(seed))


def write_prompt_files() -> None:
    """Regenerate train.txt / heldout.txt (they are committed; this documents their origin)."""
    train, heldout = split_prompts()
    header = "# shapes-world prompts, written by `python -m rollout.tiny.world`; one a line\n"
    prompt_file("train").write_text(header + "\n".join(train) + "\n")
    prompt_file("heldout").write_text(header + "\n".join(heldout) + "\n")


if __name__ == "__main__":
    write_prompt_files()
    train, heldout = split_prompts()
    print(f"wrote {len(train)} train and {len(heldout)} held-out prompts to {PROMPT_DIR}")
