"""Text world: the embedded OCR task (`tiny:text`), judged by real OCR models.

A prompt asks for a short string, Flow-GRPO's OCR prompt form in miniature:

    a sign that says "k7pa"

The string is 3 or 4 characters from ALPHABET (8 digits and 16 lowercase letters, none of
the glyphs OCR cannot tell apart at this size: 0/o, 1/l/i), so `read == target` is
decidable from pixels. The renderer draws it on a HEIGHT × WIDTH canvas (32 × 64) in a
fixed layout of SLOTS character cells: a box of SLOTS monospace advances centred on the
canvas (its left edge on a patch boundary), the string left-aligned in it (character j in
cell j whatever the length), so where character j goes depends on j alone
(`slot_centre`; the tiny model's text positions are built from it, rollout/tiny/model.py).
The font is matplotlib's bundled DejaVu Sans Mono Bold at SIZE px: its advance (12.04 px)
is 3 of the model's 4-px patches, so every cell holds its glyph at nearly the same phase
and a 0.6 M-parameter model learns legible glyphs in minutes on 2 cores. (A first version
also varied the font, size and position: after 1200 steps of pretraining its samples
were illegible, held-out OCR 0.01.) What the prompt does not fix is the colour:

    colour  background per channel × U[0.78, 1.00] of white; text per channel U[0, 0.30]

Caption noise (an option of `python -m rollout.tiny.pretrain --caption-noise P`, not what
the shipped weights used): real text-to-image models misspell partly because captions and
renders disagree. With it, each character of a training render is, with probability P,
drawn as its TWIN (12 fixed pairs covering ALPHABET: 2↔7, 3↔8, a↔d, h↔k, …) while the
caption keeps the true string (`render_captioned`), so the base draws clean glyphs but
picks character or twin per cell at random. Measured (2026-12-05, P = CAPTION_NOISE, 2000
steps): held-out OCR 0.37, fidelity 0.41, a group spread like the shipped base's; but the
tiny_text.yaml recipe closed 2 % of the PP-OCRv6 gap in 600 s while fidelity fell to 79 %
(the shipped base: 12-13 %), so the shipped weights stay the clean-caption ones.

Split: HELDOUT strings (a seeded sample) are never in train.txt; pretraining and RL read
train.txt only (`text_train.txt` / `text_heldout.txt`, written by `python -m
rollout.tiny.text_world`). The OCR judges live in `reward/ocr.py` and import nothing
from here.
"""

from __future__ import annotations

import functools
import random
import re
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

HEIGHT, WIDTH = 32, 64
ALPHABET = "23456789acdehkmnprstuwxy"
LENGTHS = (3, 4)
SLOTS = max(LENGTHS)  # character cells of the layout box
FONT = "DejaVuSansMono-Bold.ttf"
SIZE = 20  # font size in pixels: an advance of 0.602 em = 12.04 px, 3 patches of 4 px
PATCH = 4  # the tiny model's patch (rollout/tiny/model.py PATCH): the box starts on a patch edge
BACKGROUND = (0.78, 1.00)
TEXT = (0.00, 0.30)
MARGIN = 1  # pixels kept free at the canvas edge
TRAIN_STRINGS, HELDOUT_STRINGS = 4000, 64
SPLIT_SEED = 0
PROMPT_DIR = Path(__file__).parent
TEMPLATE = 'a sign that says "{}"'
# Caption noise of the pretraining data: each character of a training render is, with
# probability CAPTION_NOISE, drawn as its TWIN instead (pairs of the alphabet, symmetric).
TWINS = ("27", "38", "4x", "5s", "69", "ad", "ce", "hk", "mw", "nu", "py", "rt")
TWIN = {a: b for pair in TWINS for a, b in (pair, pair[::-1])}
CAPTION_NOISE = 0.4
_PROMPT = re.compile(r'^a sign that says "([^"]*)"$')


def prompt_of(text: str) -> str:
    return TEMPLATE.format(text)


def parse_prompt(prompt: str) -> str:
    """The string a text-world prompt asks for; ValueError naming the prompt otherwise."""
    m = _PROMPT.match(prompt.strip())
    text = m[1] if m else ""
    if not (m and len(text) in LENGTHS and all(c in ALPHABET for c in text)):
        raise ValueError(
            f"prompt {prompt!r} is not a text-world prompt; expected {TEMPLATE.format('<text>')!r} "
            f"with {' or '.join(map(str, LENGTHS))} characters from {ALPHABET!r}"
        )
    return text


def split_strings() -> tuple[list[str], list[str]]:
    """The fixed (train, heldout) strings: distinct seeded draws, lengths alternating."""
    rng = random.Random(SPLIT_SEED)
    seen: dict[str, None] = {}
    while len(seen) < TRAIN_STRINGS + HELDOUT_STRINGS:
        n = LENGTHS[len(seen) % len(LENGTHS)]
        seen.setdefault("".join(rng.choice(ALPHABET) for _ in range(n)))
    strings = list(seen)
    return strings[HELDOUT_STRINGS:], strings[:HELDOUT_STRINGS]


def prompt_file(split: str) -> Path:
    """Path of the packaged `text_train.txt` or `text_heldout.txt` (`tiny:text:train` /
    `tiny:text:heldout`, orchestrator/prompts.py)."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    return PROMPT_DIR / f"text_{split}.txt"


def prompts(split: str) -> list[str]:
    """The train or held-out prompts, as `prompt_file(split)` holds them (pretraining's data)."""
    prompt_file(split)  # checks the split's name
    train, heldout = split_strings()
    return [prompt_of(text) for text in (heldout if split == "heldout" else train)]


@functools.lru_cache(maxsize=None)
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name), size)


def _advance(font: ImageFont.FreeTypeFont) -> float:
    return font.getlength(ALPHABET[0])  # monospace: every character's advance


def _pen_x() -> int:
    """x of cell 0's left edge: the box centred, rounded to a patch edge (32 − 24.08 -> 8)."""
    return PATCH * round((WIDTH / 2 - SLOTS * _advance(_font(FONT, SIZE)) / 2) / PATCH)


def slot_centre(j: int) -> tuple[float, float]:
    """(x, y) in pixels of the centre of character cell j (continuous coordinates: pixel i
    spans [i, i+1)). j < 0 or j >= SLOTS extrapolate."""
    return _pen_x() + (j + 0.5) * _advance(_font(FONT, SIZE)), HEIGHT / 2


def render_text(text: str, rng: np.random.Generator) -> np.ndarray:
    """One render of `text` in fresh colours: uint8 [HEIGHT, WIDTH, 3]."""
    background = tuple(int(v) for v in np.round(255 * rng.uniform(*BACKGROUND, size=3)))
    colour = tuple(int(v) for v in np.round(255 * rng.uniform(*TEXT, size=3)))
    font = _font(FONT, SIZE)
    image = Image.new("RGB", (WIDTH, HEIGHT), background)
    draw = ImageDraw.Draw(image)
    _, top, _, bottom = draw.textbbox(
        (0, 0), ALPHABET, font=font
    )  # the font's vertical extent, not the string's
    y = max((HEIGHT - (bottom - top)) / 2 - top, MARGIN - top)
    draw.text((_pen_x(), round(y)), text, font=font, fill=colour)
    return np.asarray(image)


def render_prompts(prompts: list[str], rng: np.random.Generator) -> np.ndarray:
    """Ground-truth renders of prompts: uint8 [B, HEIGHT, WIDTH, 3]."""
    return np.stack([render_text(parse_prompt(p), rng) for p in prompts])


def caption_noise(text: str, rng: np.random.Generator, p: float = CAPTION_NOISE) -> str:
    """What a pretraining render of `text` shows: each character swapped for its TWIN with
    probability p (independently), the caption left as it is."""
    return "".join(TWIN[c] if rng.random() < p else c for c in text)


def render_captioned(prompts: list[str], rng: np.random.Generator, p: float = CAPTION_NOISE) -> np.ndarray:
    """Pretraining data: renders of prompts under caption noise, uint8 [B, HEIGHT, WIDTH, 3]."""
    return np.stack([render_text(caption_noise(parse_prompt(q), rng, p), rng) for q in prompts])


def write_prompt_files() -> None:
    """Regenerate text_train.txt / text_heldout.txt (committed; this documents their origin)."""
    train, heldout = split_strings()
    header = "# text-world prompts, written by `python -m rollout.tiny.text_world`; one a line\n"
    prompt_file("train").write_text(header + "\n".join(map(prompt_of, train)) + "\n")
    prompt_file("heldout").write_text(header + "\n".join(map(prompt_of, heldout)) + "\n")


if __name__ == "__main__":
    write_prompt_files()
    train, heldout = split_strings()
    print(f"wrote {len(train)} train and {len(heldout)} held-out prompts to {PROMPT_DIR}")
