"""The tiny text-to-image model: real diffusers / transformers classes, tiny configs.

    tokenizer     word-level over the shapes vocabulary, built in code (`tokenizers`),
                  saved as a `PreTrainedTokenizerFast`
    text_encoder  transformers `CLIPTextModel`, 2 layers, width 64; its last hidden state
                  is FLUX's `encoder_hidden_states`, its EOS state the `pooled_projections`
    transformer   diffusers `FluxTransformer2DModel`, width 96, 2 double + 2 single blocks
    "latents"     pixels in [-1, 1], 4x4 patches: a 32x32 RGB image is [64 tokens, 48]

Everything is written with `save_pretrained` and read back with `from_pretrained` by
`rollout.policy.load_policy`, the code path real checkpoints take. The shipped weights
live in `rollout/tiny/weights/` and are produced by `python -m rollout.tiny.pretrain`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import FluxTransformer2DModel
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerFast

from rollout.tiny import world

WEIGHTS_DIR = Path(__file__).parent / "weights"
PATCH = 4
CHANNELS = 3
MAX_TOKENS = 16
SPECIAL = ["<pad>", "<unk>", "<bos>", "<eos>"]  # ids 0..3; eos != 2 (CLIP's legacy pooling)


def vocabulary() -> list[str]:
    words = {"a", "at", "the", "on", "background"}
    words |= set(world.SHAPES)
    words |= set(world.COLOURS)
    for position in world.POSITIONS:
        words |= set(position.split())
    return SPECIAL + sorted(words)


def build_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {word: i for i, word in enumerate(vocabulary())}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
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
        model_max_length=MAX_TOKENS,
    )


def text_encoder_config() -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=len(vocabulary()),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=MAX_TOKENS,
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


def build(seed: int = 0) -> tuple[PreTrainedTokenizerFast, CLIPTextModel, FluxTransformer2DModel]:
    """Fresh, seeded, randomly initialised tokenizer / text encoder / transformer."""
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(text_encoder_config())
    transformer = FluxTransformer2DModel(**transformer_config())
    return build_tokenizer(), text_encoder, transformer


def save(path: Path, tokenizer, text_encoder, transformer, info: dict) -> None:
    """Write the model in the layout `rollout.policy.load_policy` reads (kind 'tiny')."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(path / "tokenizer")
    text_encoder.save_pretrained(path / "text_encoder")
    transformer.save_pretrained(path / "transformer")
    meta = {"kind": "tiny", "image_size": world.IMAGE_SIZE, "patch_size": PATCH, **info}
    (path / "raygrpo_model.json").write_text(json.dumps(meta, indent=2) + "\n")


def patchify(images: torch.Tensor) -> torch.Tensor:
    """[B, H, W, C] in [-1, 1] -> latents [B, (H/P)*(W/P), P*P*C]."""
    b, h, w, c = images.shape
    x = images.reshape(b, h // PATCH, PATCH, w // PATCH, PATCH, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, (h // PATCH) * (w // PATCH), PATCH * PATCH * c)


def unpatchify(latents: torch.Tensor, size: int) -> torch.Tensor:
    """Inverse of `patchify`: [B, L, P*P*C] -> [B, size, size, C]."""
    b = latents.shape[0]
    n = size // PATCH
    x = latents.reshape(b, n, n, PATCH, PATCH, CHANNELS)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, size, size, CHANNELS)


def image_ids(size: int) -> torch.Tensor:
    """FLUX-style positional ids [L, 3] = (0, row, col) of each patch token."""
    n = size // PATCH
    ids = torch.zeros(n, n, 3)
    ids[..., 1] = torch.arange(n)[:, None]
    ids[..., 2] = torch.arange(n)[None, :]
    return ids.reshape(n * n, 3)
