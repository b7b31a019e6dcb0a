"""The tiny text-to-image models: real diffusers / transformers classes, tiny configs.

Two worlds share one architecture:

    world     tokenizer (built in code with `tokenizers`, saved as PreTrainedTokenizerFast)   image
    shapes    word-level over the shapes vocabulary, MAX_TOKENS[shapes] = 16                   32 × 32
    text      character-level over the quoted string only (the template is dropped by the      32 × 64
              normalizer), MAX_TOKENS[text] = 8

    text_encoder  transformers `CLIPTextModel`, 2 layers, width 64; its last hidden state
                  is FLUX's `encoder_hidden_states`, its EOS state the `pooled_projections`
    transformer   diffusers `FluxTransformer2DModel`, width 96, 2 double + 2 single blocks
    "latents"     pixels in [-1, 1], 4x4 patches: an H × W RGB image is [H/4 · W/4 tokens, 48]
    positions     FLUX's 3-axis RoPE ids: img_ids (0, row, col) of each patch; txt_ids zeros
                  for shapes, and for text the expected (0, row, col) of each token's
                  character cell in patch units (token i = <bos>, c1, …: cell i − 1 of
                  text_world's layout), so a patch finds "its" character by relative position.
                  They are part of the model: saved in raygrpo_model.json (`txt_ids`) and
                  read back by every path that loads it (pretraining, rollout, learner).

Everything is written with `save_pretrained` and read back with `from_pretrained` by
`rollout.policy.load_policy`, the code path real checkpoints take. The shipped weights
live in `rollout/tiny/weights/` (shapes) and `rollout/tiny/weights_text/` (text) and are
produced by `python -m rollout.tiny.pretrain [--world text]`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import FluxTransformer2DModel
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerFast

from rollout.tiny import text_world, world

WEIGHTS_DIR = Path(__file__).parent / "weights"
TEXT_WEIGHTS_DIR = Path(__file__).parent / "weights_text"
WORLDS = ("shapes", "text")
PATCH = 4
CHANNELS = 3
MAX_TOKENS = {"shapes": 16, "text": 8}  # text: <bos>, up to 4 characters, <eos>, padding
SPECIAL = ["<pad>", "<unk>", "<bos>", "<eos>"]  # ids 0..3; eos != 2 (CLIP's legacy pooling)


def image_shape(name: str) -> tuple[int, int]:
    """(height, width) of a world's images."""
    return (world.IMAGE_SIZE, world.IMAGE_SIZE) if name == "shapes" else (text_world.HEIGHT, text_world.WIDTH)


def vocabulary(name: str = "shapes") -> list[str]:
    if name == "text":
        return SPECIAL + sorted(text_world.ALPHABET)
    words = {"a", "at", "the", "on", "background"}
    words |= set(world.SHAPES)
    words |= set(world.COLOURS)
    for position in world.POSITIONS:
        words |= set(position.split())
    return SPECIAL + sorted(words)


def build_tokenizer(name: str = "shapes") -> PreTrainedTokenizerFast:
    vocab = {word: i for i, word in enumerate(vocabulary(name))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    if name == "text":  # keep only the quoted string, one token per character
        tok.normalizer = normalizers.Sequence(
            [normalizers.Replace(Regex('^[^"]*"'), ""), normalizers.Replace(Regex('".*$'), "")]
        )
        tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    else:
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>", special_tokens=[("<bos>", vocab["<bos>"]), ("<eos>", vocab["<eos>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<bos>",
        eos_token="<eos>",
        model_max_length=MAX_TOKENS[name],
    )


def text_encoder_config(name: str = "shapes") -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=len(vocabulary(name)),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=MAX_TOKENS[name],
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
        projection_dim=64,
    )


def transformer_config() -> dict:
    return dict(
        patch_size=1,
        in_channels=PATCH * PATCH * CHANNELS,
        num_layers=2,
        num_single_layers=2,
        attention_head_dim=32,
        num_attention_heads=3,
        joint_attention_dim=64,
        pooled_projection_dim=64,
        guidance_embeds=False,
        axes_dims_rope=(8, 12, 12),
    )


def build(
    seed: int = 0, name: str = "shapes"
) -> tuple[PreTrainedTokenizerFast, CLIPTextModel, FluxTransformer2DModel]:
    """Fresh, seeded, randomly initialised tokenizer / text encoder / transformer of world `name`."""
    if name not in WORLDS:
        raise ValueError(f"world {name!r}: choose one of {WORLDS}")
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(text_encoder_config(name))
    transformer = FluxTransformer2DModel(**transformer_config())
    return build_tokenizer(name), text_encoder, transformer


def load(path: Path) -> tuple[PreTrainedTokenizerFast, CLIPTextModel, FluxTransformer2DModel]:
    """The (tokenizer, text encoder, transformer) written by `save` (for continued pretraining)."""
    path = Path(path)
    return (
        PreTrainedTokenizerFast.from_pretrained(path / "tokenizer"),
        CLIPTextModel.from_pretrained(path / "text_encoder"),
        FluxTransformer2DModel.from_pretrained(path / "transformer"),
    )


def text_ids(name: str = "shapes") -> torch.Tensor:
    """FLUX txt_ids [MAX_TOKENS, 3] of a world's tokens (module docstring): zeros for shapes;
    for text token i sits at the centre of character cell i − 1 (patch units, the same
    coordinates as `image_ids`: patch (r, c) is centred at pixel (4r + 2, 4c + 2))."""
    ids = torch.zeros(MAX_TOKENS[name], 3)
    if name == "text":
        for i in range(MAX_TOKENS[name]):
            x, y = text_world.slot_centre(i - 1)
            ids[i, 1], ids[i, 2] = y / PATCH - 0.5, x / PATCH - 0.5
    return ids


def save(
    path: Path,
    tokenizer,
    text_encoder,
    transformer,
    info: dict,
    name: str = "shapes",
    txt_ids: torch.Tensor | None = None,
) -> None:
    """Write the model in the layout `rollout.policy.load_policy` reads (kind 'tiny');
    `txt_ids` defaults to the world's `text_ids`."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(path / "tokenizer")
    text_encoder.save_pretrained(path / "text_encoder")
    transformer.save_pretrained(path / "transformer")
    height, width = image_shape(name)
    ids = text_ids(name) if txt_ids is None else txt_ids
    meta = {
        "kind": "tiny",
        "world": name,
        "image_size": [height, width] if height != width else height,
        "patch_size": PATCH,
        "txt_ids": [[round(float(v), 4) for v in row] for row in ids],
        **info,
    }
    (path / "raygrpo_model.json").write_text(json.dumps(meta, indent=2) + "\n")


def saved_text_ids(meta: dict) -> torch.Tensor | None:
    """The txt_ids a raygrpo_model.json records (None: older files, whose model used zeros)."""
    return torch.tensor(meta["txt_ids"], dtype=torch.float32) if "txt_ids" in meta else None


def patchify(images: torch.Tensor) -> torch.Tensor:
    """[B, H, W, C] in [-1, 1] -> latents [B, (H/P)*(W/P), P*P*C]."""
    b, h, w, c = images.shape
    x = images.reshape(b, h // PATCH, PATCH, w // PATCH, PATCH, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, (h // PATCH) * (w // PATCH), PATCH * PATCH * c)


def unpatchify(latents: torch.Tensor, height: int, width: int | None = None) -> torch.Tensor:
    """Inverse of `patchify`: [B, L, P*P*C] -> [B, height, width, C] (width defaults to height)."""
    width = height if width is None else width
    b = latents.shape[0]
    rows, cols = height // PATCH, width // PATCH
    x = latents.reshape(b, rows, cols, PATCH, PATCH, CHANNELS)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, height, width, CHANNELS)


def image_ids(height: int, width: int | None = None) -> torch.Tensor:
    """FLUX-style positional ids [L, 3] = (0, row, col) of each patch token."""
    width = height if width is None else width
    rows, cols = height // PATCH, width // PATCH
    ids = torch.zeros(rows, cols, 3)
    ids[..., 1] = torch.arange(rows)[:, None]
    ids[..., 2] = torch.arange(cols)[None, :]
    return ids.reshape(rows * cols, 3)
