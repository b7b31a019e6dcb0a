"""Our PIL preprocessing against hand-worked numbers and the reference transforms.

(The bit-for-bit comparison with torchvision and the official packages is bench/oracle:
torchvision cannot be installed beside our torch.)"""

import numpy as np
import pytest
import torch
from PIL import Image

from reward.preprocess import center_crop, clip_style, resize_shorter_side, smart_resize


def test_resize_and_crop_sizes_and_offsets_by_hand():
    # 300 wide x 200 high: shorter side 200 -> 224, longer int(224 * 300 / 200) = 336
    assert resize_shorter_side(Image.new("RGB", (300, 200)), 224).size == (336, 224)
    # 225 wide x 230 high: width -> 224, height int(224 * 230 / 225) = int(228.97) = 228
    assert resize_shorter_side(Image.new("RGB", (225, 230)), 224).size == (224, 228)
    # centre crop of 224 x 227 (a 3-pixel margin): torchvision's top = int(round(1.5)) = 2, not 3 // 2 = 1
    rows = np.repeat(np.arange(227, dtype=np.uint8)[:, None, None], 224, axis=1).repeat(3, axis=2)
    cropped = np.asarray(center_crop(Image.fromarray(rows), 224))
    assert cropped[0, 0, 0] == 2 and cropped[-1, 0, 0] == 225
    # 336 x 224 -> left = round(112 / 2) = 56
    cols = np.repeat(np.arange(336)[None, :, None] % 256, 224, axis=0).repeat(3, axis=2).astype(np.uint8)
    assert np.asarray(center_crop(Image.fromarray(cols), 224))[0, 0, 0] == 56


def test_normalised_values_of_a_constant_image_by_hand():
    # (255, 0, 128): ((255/255 − 0.48145466) / 0.26862954, (0 − 0.4578275) / 0.26130258,
    #                 (128/255 − 0.40821073) / 0.27577711) = (1.93034, −1.75210, 0.33995)
    image = Image.new("RGB", (300, 200), (255, 0, 128))
    x = clip_style(image, 224)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    torch.testing.assert_close(x[:, 100, 100], torch.tensor([1.93034, -1.75210, 0.33995]), atol=1e-5, rtol=0)
    assert torch.allclose(x, x[:, :1, :1].expand_as(x))  # bicubic keeps a constant image constant


def test_clip_style_matches_transformers_clip_image_processor():
    """The same transform in transformers' PIL CLIP processor (even margins, where its floor
    and torchvision's round agree)."""
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    rng = np.random.default_rng(0)
    for w, h in [(300, 200), (224, 224), (512, 512), (160, 240)]:
        image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        reference = CLIPImageProcessorPil()(images=[image], return_tensors="pt").pixel_values[0]
        torch.testing.assert_close(clip_style(image, 224), reference, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "hw, expected",
    [
        ((512, 512), (448, 448)),  # 512 rounds to 504; 504² > 200704, β = 512/448 -> floor to 448
        ((720, 720), (448, 448)),
        (
            (200, 300),
            (392, 560),
        ),  # 196·308 < 200704: β = sqrt(200704/60000) = 1.829 -> ceil(13.06)·28, ceil(19.60)·28
        ((1024, 768), (504, 364)),  # β = sqrt(786432/200704) = 1.9795 -> floor(18.47)·28, floor(13.85)·28
    ],
)
def test_hpsv3_pixel_budget_by_hand(hw, expected):
    assert smart_resize(*hw, min_pixels=256 * 28 * 28, max_pixels=256 * 28 * 28) == expected
