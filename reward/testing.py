"""Tiny random-weight reward models in the official on-disk layouts (tests and bench/oracle).

    write_clip(dir)                  a transformers CLIP checkpoint (as openai/clip-vit-*)
    write_imagereward(dir, ...)      ImageReward.pt (official key names) + med_config.json, and
                                     a bert-base-uncased-style tokenizer dir (vocab.txt)
    write_hpsv3(base_dir, ckpt_dir)  a Qwen2-VL-7B-Instruct-style base (flat 4.x config.json,
                                     4.x weight names, tokenizer, chat template, image-processor
                                     config) and HPSv3.safetensors (4.x names, <|Reward|> row, rm_head)

Built from configs with a fixed seed, nothing downloaded. The official packages load these
files unchanged (bench/oracle), which is what makes them a fair common ground.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch

from reward.preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

WORDS = "a an the at on in of with and background top bottom left right center red green blue yellow cyan magenta circle square triangle cat dog photo".split()
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]
QWEN_CHAT_TEMPLATE = (  # Qwen2-VL-7B-Instruct's chat_template.json
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in "
    "content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] "
    "== 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}"
    "{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}"
)


def _byte_vocab() -> dict[str, int]:
    from tokenizers.pre_tokenizers import ByteLevel

    return {c: i for i, c in enumerate(sorted(ByteLevel.alphabet()))}  # (a set: sort for stable ids)


def write_clip(path: str | Path, seed: int = 0) -> Path:
    """A tiny CLIPModel with the openai/clip-vit-* files: config, weights, tokenizer, preprocessor_config."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    path = Path(path)
    vocab = _byte_vocab()
    vocab.update({c + "</w>": len(vocab) + i for i, c in enumerate(list(vocab))})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    tokenizer.model_max_length = 77
    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=len(vocab) - 2,
                         eos_token_id=len(vocab) - 1, pad_token_id=len(vocab) - 1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=224, patch_size=32),
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    preprocessor = {"crop_size": {"height": 224, "width": 224}, "do_center_crop": True, "do_convert_rgb": True,
                    "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": list(OPENAI_CLIP_MEAN),
                    "image_processor_type": "CLIPImageProcessor", "image_std": list(OPENAI_CLIP_STD),
                    "resample": 3, "rescale_factor": 1 / 255, "size": {"shortest_edge": 224}}
    (path / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
    return path


def write_bert_vocab(path: str | Path) -> Path:
    """A bert-base-uncased-style tokenizer directory (vocab.txt, lower-casing) of a few words."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(string.ascii_lowercase + string.digits + ",.'-!?")
    words += ["##" + c for c in string.ascii_lowercase] + WORDS
    (path / "vocab.txt").write_text("\n".join(words) + "\n")
    (path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "model_max_length": 512}))
    (path / "config.json").write_text(json.dumps({"model_type": "bert", "vocab_size": len(words)}))
    return path


def write_imagereward(path: str | Path, seed: int = 0, *, vision_width: int = 128, vision_depth: int = 2,
                      text_width: int = 32, text_layers: int = 2, text_heads: int = 2) -> Path:
    """ImageReward.pt (official keys) + med_config.json under `path`, and `path`/tokenizer.
    Official sizes for the reference code: vision_width 1024, depth 24, text_width 768."""
    from reward.imagereward import ImageRewardModel, configs_from_checkpoint, official_to_ours

    path = Path(path)
    tokenizer_dir = write_bert_vocab(path / "tokenizer")
    vocab = len((tokenizer_dir / "vocab.txt").read_text().split()) + 2  # + [DEC], [ENC]
    med_config = {"architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
                  "hidden_dropout_prob": 0.1, "hidden_size": text_width, "initializer_range": 0.02,
                  "intermediate_size": 4 * text_width, "layer_norm_eps": 1e-12, "max_position_embeddings": 512,
                  "model_type": "bert", "num_attention_heads": text_heads, "num_hidden_layers": text_layers,
                  "pad_token_id": 0, "type_vocab_size": 2, "vocab_size": vocab, "encoder_width": vision_width,
                  "add_cross_attention": True}
    (path / "med_config.json").write_text(json.dumps(med_config, indent=2))
    # Official names and shapes, seeded: the checkpoint is built in *their* names, then read back by ours.
    torch.manual_seed(seed)
    shapes = _official_imagereward_shapes(vision_width, vision_depth, med_config)
    state = {k: _init(k, s) for k, s in shapes.items()}
    state["blip.text_encoder.embeddings.position_ids"] = torch.arange(512)[None]
    vision, text, mlp_dims = configs_from_checkpoint(state, med_config)
    ours = set(ImageRewardModel(vision, text, mlp_dims).state_dict())
    mapped = {official_to_ours(k) for k in state} - {None}
    assert mapped == ours, (sorted(mapped - ours)[:3], sorted(ours - mapped)[:3])
    torch.save(state, path / "ImageReward.pt")
    return path


def _init(name: str, shape: tuple) -> torch.Tensor:
    """Random weights: norms ≈ 1, the ViT N(0, 0.05²), text and head N(0, 0.1²) — wide enough
    that scores differ visibly between images and prompts (a sharper oracle check)."""
    if "norm" in name.lower() and name.endswith("weight"):
        return 1.0 + torch.randn(shape) * 0.1
    return torch.randn(shape) * (0.05 if "visual_encoder" in name else 0.1)


def _official_imagereward_shapes(width: int, depth: int, med: dict) -> dict[str, tuple]:
    """Every tensor of ImageReward.ImageReward's state dict (BLIP vit.py, med.py, MLP), with shapes."""
    d, tokens = med["hidden_size"], (224 // 16) ** 2 + 1
    shapes = {"blip.visual_encoder.cls_token": (1, 1, width), "blip.visual_encoder.pos_embed": (1, tokens, width),
              "blip.visual_encoder.patch_embed.proj.weight": (width, 3, 16, 16),
              "blip.visual_encoder.patch_embed.proj.bias": (width,),
              "blip.visual_encoder.norm.weight": (width,), "blip.visual_encoder.norm.bias": (width,)}
    for i in range(depth):
        b = f"blip.visual_encoder.blocks.{i}."
        for name, shape in {"norm1": (width,), "norm2": (width,)}.items():
            shapes[b + name + ".weight"], shapes[b + name + ".bias"] = shape, shape
        for name, (o, n) in {"attn.qkv": (3 * width, width), "attn.proj": (width, width),
                             "mlp.fc1": (4 * width, width), "mlp.fc2": (width, 4 * width)}.items():
            shapes[b + name + ".weight"], shapes[b + name + ".bias"] = (o, n), (o,)
    t = "blip.text_encoder."
    shapes.update({t + "embeddings.word_embeddings.weight": (med["vocab_size"], d),
                   t + "embeddings.position_embeddings.weight": (med["max_position_embeddings"], d),
                   t + "embeddings.LayerNorm.weight": (d,), t + "embeddings.LayerNorm.bias": (d,)})
    for i in range(med["num_hidden_layers"]):
        b = f"{t}encoder.layer.{i}."
        linears = {"attention.self.query": (d, d), "attention.self.key": (d, d), "attention.self.value": (d, d),
                   "attention.output.dense": (d, d), "crossattention.self.query": (d, d),
                   "crossattention.self.key": (d, width), "crossattention.self.value": (d, width),
                   "crossattention.output.dense": (d, d), "intermediate.dense": (med["intermediate_size"], d),
                   "output.dense": (d, med["intermediate_size"])}
        for name, (o, n) in linears.items():
            shapes[b + name + ".weight"], shapes[b + name + ".bias"] = (o, n), (o,)
        for name in ("attention.output.LayerNorm", "crossattention.output.LayerNorm", "output.LayerNorm"):
            shapes[b + name + ".weight"], shapes[b + name + ".bias"] = (d,), (d,)
    shapes.update({"blip.vision_proj.weight": (256, width), "blip.vision_proj.bias": (256,),
                   "blip.text_proj.weight": (256, d), "blip.text_proj.bias": (256,)})
    for i, (o, n) in zip((0, 2, 4, 6, 7), ((1024, d), (128, 1024), (64, 128), (16, 64), (1, 16))):
        shapes[f"mlp.layers.{i}.weight"], shapes[f"mlp.layers.{i}.bias"] = (o, n), (o,)
    return shapes


def qwen_tokenizer():
    """A byte-level BPE Qwen2 tokenizer without merges + Qwen2-VL's special tokens."""
    from transformers import Qwen2Tokenizer

    tok = Qwen2Tokenizer(vocab=_byte_vocab(), merges=[], unk_token=None, eos_token="<|im_end|>",
                         pad_token="<|endoftext|>")
    tok.add_special_tokens({"additional_special_tokens": QWEN_SPECIALS})
    tok.model_max_length = 32768
    return tok


def qwen2vl_config(vocab_size: int, ids: dict[str, int]) -> dict:
    """A Qwen2-VL-7B-Instruct-shaped config.json (flat, transformers 4.x) with tiny widths."""
    return {
        "architectures": ["Qwen2VLForConditionalGeneration"], "model_type": "qwen2_vl", "attention_dropout": 0.0,
        "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
        "vision_start_token_id": ids["<|vision_start|>"], "vision_end_token_id": ids["<|vision_end|>"],
        "vision_token_id": ids["<|vision_pad|>"], "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"], "hidden_act": "silu", "hidden_size": 64, "initializer_range": 0.2,  # (wide: scores that differ)
        "intermediate_size": 128, "max_position_embeddings": 32768, "max_window_layers": 2, "num_attention_heads": 4,
        "num_hidden_layers": 2, "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
        "sliding_window": 32768, "tie_word_embeddings": False, "torch_dtype": "float32", "use_cache": True,
        "use_sliding_window": False, "vocab_size": vocab_size, "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
        "vision_config": {"depth": 2, "embed_dim": 32, "mlp_ratio": 2, "num_heads": 2, "in_chans": 3, "hidden_size": 64,
                          "patch_size": 14, "spatial_merge_size": 2, "spatial_patch_size": 14, "temporal_patch_size": 2},
    }


def to_45_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers 5.x Qwen2-VL names -> the 4.45 names the hub checkpoints use."""
    out = {}
    for k, v in state.items():
        if k.startswith("model.visual."):
            k = "visual." + k.removeprefix("model.visual.")
        elif k.startswith("model.language_model."):
            k = "model." + k.removeprefix("model.language_model.")
        out[k] = v.contiguous()
    return out


def write_hpsv3(base_dir: str | Path, checkpoint_dir: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """A tiny Qwen2-VL base (official layout) and HPSv3.safetensors for it."""
    from safetensors.torch import save_file
    from transformers import AutoConfig, Qwen2VLForConditionalGeneration

    from reward.hpsv3 import REWARD_TOKEN

    base, ckpt = Path(base_dir), Path(checkpoint_dir)
    base.mkdir(parents=True, exist_ok=True)
    ckpt.mkdir(parents=True, exist_ok=True)
    tok = qwen_tokenizer()
    tok.save_pretrained(base)
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    # like the real model, the embedding table is padded beyond the tokenizer (152064 > 151657)
    (base / "config.json").write_text(json.dumps(qwen2vl_config(len(tok) + 6, ids), indent=2))
    (base / "chat_template.json").write_text(json.dumps({"chat_template": QWEN_CHAT_TEMPLATE}))
    (base / "preprocessor_config.json").write_text(json.dumps({
        "min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
        "image_mean": list(OPENAI_CLIP_MEAN), "image_std": list(OPENAI_CLIP_STD),
        "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2VLProcessor"}, indent=2))
    torch.manual_seed(seed)
    vlm = Qwen2VLForConditionalGeneration(AutoConfig.from_pretrained(base))
    save_file(to_45_names(vlm.state_dict()), str(base / "model.safetensors"), metadata={"format": "pt"})
    # HPSv3: <|Reward|> appended to the tokenizer, embeddings resized to it, ranknet head
    tok.add_special_tokens({"additional_special_tokens": [REWARD_TOKEN]})
    vlm.resize_token_embeddings(len(tok))
    head = torch.nn.Sequential(torch.nn.Linear(64, 1024), torch.nn.ReLU(), torch.nn.Dropout(0.05),
                               torch.nn.Linear(1024, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    state = to_45_names(vlm.state_dict())
    state.update({f"rm_head.{k}": v.contiguous() for k, v in head.state_dict().items()})
    save_file(state, str(ckpt / "HPSv3.safetensors"), metadata={"format": "pt"})
    return base, ckpt
