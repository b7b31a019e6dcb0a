"""Tiny random-weight FLUX and SD3 pipelines in the official diffusers layout (tests, benchmarks).

Nothing is downloaded: every component is built from a config (seeded, as diffusers' fast
tests do), tokenizers are built from in-code vocabularies, and the pipeline class's own
`save_pretrained` writes model_index.json and the component folders, so `load_policy` reads
them exactly as it reads black-forest-labs/FLUX.1-dev or stabilityai/stable-diffusion-3.5-large.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch

CLIP_MAX_LENGTH = 77
WORDS = "a an the at on in of with and background top bottom left right center red green blue yellow cyan magenta circle square triangle".split()


def clip_tokenizer():
    """A byte-level BPE CLIPTokenizer without merges: every byte is a token (any text encodes)."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    alphabet = sorted(ByteLevel.alphabet())  # (a set: sort for stable ids)
    vocab = {c: i for i, c in enumerate(alphabet)}
    vocab.update({c + "</w>": len(alphabet) + i for i, c in enumerate(alphabet)})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    tok = CLIPTokenizer(vocab=vocab, merges=[])
    tok.model_max_length = CLIP_MAX_LENGTH
    return tok


def t5_tokenizer():
    """A unigram T5Tokenizer over characters and a few whole words (upper case -> <unk>)."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(c, -3.0) for c in string.ascii_lowercase + string.digits + ",.'-!?"]
    pieces += [("▁" + w, -1.0) for w in WORDS]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


def _clip_config(hidden: int, projection: int):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(vocab_size=len(clip_tokenizer()), hidden_size=hidden, intermediate_size=2 * hidden,
                          num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=CLIP_MAX_LENGTH,
                          projection_dim=projection, bos_token_id=512, eos_token_id=513, pad_token_id=513)


def _t5(d_model: int):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=len(t5_tokenizer()), d_model=d_model, d_kv=8, d_ff=2 * d_model,
                                   num_layers=2, num_heads=4, relative_attention_num_buckets=8, decoder_start_token_id=0))


def _vae(latent_channels: int, shift_factor: float | None):
    """A two-block AutoencoderKL: 2× downsampling (FLUX's and SD3's real VAEs have four: 8×)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
                         latent_channels=latent_channels, norm_num_groups=4, sample_size=32,
                         use_quant_conv=False, use_post_quant_conv=False,
                         scaling_factor=1.5035, shift_factor=shift_factor)


def write_flux_pipeline(path: str | Path, seed: int = 0, guidance_embeds: bool = True) -> Path:
    """A tiny FluxPipeline (FLUX.1-dev layout: CLIP + T5, guidance embedding) under `path`."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                         pooled_projection_dim=32, guidance_embeds=guidance_embeds,
                                         axes_dims_rope=(4, 6, 6))
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15),
        vae=_vae(4, shift_factor=0.0609),
        text_encoder=CLIPTextModel(_clip_config(32, 32)),
        tokenizer=clip_tokenizer(),
        text_encoder_2=_t5(32),
        tokenizer_2=t5_tokenizer(),
        transformer=transformer,
    )
    pipe.save_pretrained(str(path))
    return Path(path)


def write_sd3_pipeline(path: str | Path, seed: int = 0, with_t5: bool = True) -> Path:
    """A tiny StableDiffusion3Pipeline (SD3.5 layout: two CLIPs + T5) under `path`. The CLIPs'
    widths (12 + 12) are below T5's (32), so the pipeline's zero padding is exercised."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(sample_size=16, patch_size=2, in_channels=4, out_channels=4, num_layers=2,
                                        attention_head_dim=8, num_attention_heads=4, joint_attention_dim=32,
                                        caption_projection_dim=32, pooled_projection_dim=64, pos_embed_max_size=32)
    pipe = StableDiffusion3Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_vae(4, shift_factor=0.0609),
        text_encoder=CLIPTextModelWithProjection(_clip_config(12, 32)),
        tokenizer=clip_tokenizer(),
        text_encoder_2=CLIPTextModelWithProjection(_clip_config(12, 32)),
        tokenizer_2=clip_tokenizer(),
        text_encoder_3=_t5(32) if with_t5 else None,
        tokenizer_3=t5_tokenizer() if with_t5 else None,
        transformer=transformer,
    )
    pipe.save_pretrained(str(path))
    return Path(path)
