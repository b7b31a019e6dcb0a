"""ImageReward (Xu et al. 2023) on transformers 5.x BLIP classes, from the official files.

Official layout (hub THUDM/ImageReward): `ImageReward.pt` — the state dict of
`ImageReward.ImageReward` (a BLIP ViT-L/16 `blip.visual_encoder`, a BERT-with-cross-attention
`blip.text_encoder` and an MLP head `mlp.layers`) — and `med_config.json` (the BERT config);
the tokenizer is bert-base-uncased plus BLIP's [DEC] / [ENC] tokens. Loaded by key mapping:

    blip.visual_encoder.cls_token / pos_embed / patch_embed.proj
                                   -> vision.embeddings.{class,position,patch}_embedding
    blip.visual_encoder.blocks.i.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}
                                   -> vision.encoder.layers.i.{layer_norm1, self_attn.qkv,
                                      self_attn.projection, …}
    blip.visual_encoder.norm       -> vision.post_layernorm
    blip.text_encoder.*            -> text.*  (transformers' BlipTextModel is BLIP's med.py port)
    mlp.layers.*                   -> mlp.layers.*
    blip.vision_proj / text_proj / *.position_ids: unused by the score, skipped

Score, as `ImageReward.score`: the [CLS] state of the prompt (max 35 tokens) cross-attending
to the image's ViT tokens -> MLP (5 linears, no activations) -> r; reward = (r − 0.16717) / 1.03334,
normalised so that ImageReward's human-ranked test set has mean 0 and std 1.
Preprocessing (ImageReward._transform(224)): shorter side to 224 (bicubic), centre crop 224,
/255, normalise with the OpenAI CLIP mean / std — reward.preprocess.clip_style, no torchvision.
"""

from __future__ import annotations

import json
import re

import torch
from torch import nn

from reward.loading import ModelScorer, resolve_file
from reward.preprocess import clip_style

REWARD_MEAN = 0.16717362830052426
REWARD_STD = 1.0333394966054072
TEXT_MAX_LENGTH = 35
IMAGE_SIZE = 224
HEAD_DIM = 64  # BLIP's ViT-B and ViT-L both use 64-wide heads (768/12, 1024/16)
SKIPPED = ("blip.vision_proj.", "blip.text_proj.")
_VIT_RENAMES = [
    (r"^cls_token$", "embeddings.class_embedding"),
    (r"^pos_embed$", "embeddings.position_embedding"),
    (r"^patch_embed\.proj\.", "embeddings.patch_embedding."),
    (r"^blocks\.(\d+)\.norm1\.", r"encoder.layers.\1.layer_norm1."),
    (r"^blocks\.(\d+)\.norm2\.", r"encoder.layers.\1.layer_norm2."),
    (r"^blocks\.(\d+)\.attn\.qkv\.", r"encoder.layers.\1.self_attn.qkv."),
    (r"^blocks\.(\d+)\.attn\.proj\.", r"encoder.layers.\1.self_attn.projection."),
    (r"^blocks\.(\d+)\.mlp\.", r"encoder.layers.\1.mlp."),
    (r"^norm\.", "post_layernorm."),
]


def official_to_ours(key: str) -> str | None:
    """An ImageReward.pt key -> our parameter name (None: not used by the score)."""
    if key.startswith(SKIPPED) or key.endswith("position_ids"):
        return None
    if key.startswith("blip.visual_encoder."):
        rest = key.removeprefix("blip.visual_encoder.")
        for pattern, repl in _VIT_RENAMES:
            if re.match(pattern, rest):
                return "vision." + re.sub(pattern, repl, rest)
        raise KeyError(f"ImageReward.pt key {key!r} matches no BLIP ViT weight")
    if key.startswith("blip.text_encoder."):
        return "text." + key.removeprefix("blip.text_encoder.")
    if key.startswith("mlp.layers."):
        return key
    raise KeyError(f"ImageReward.pt key {key!r} is not part of the ImageReward model")


class ImageRewardModel(nn.Module):
    """BLIP ViT + BLIP text encoder (cross-attention) + the MLP head."""

    def __init__(self, vision_config, text_config, mlp_dims: list[int]):
        super().__init__()
        from transformers import BlipTextModel, BlipVisionModel

        self.vision = BlipVisionModel(vision_config)
        self.text = BlipTextModel(text_config, add_pooling_layer=False)
        layers: list[nn.Module] = []
        for i, (d_in, d_out) in enumerate(zip(mlp_dims[:-1], mlp_dims[1:])):
            layers.append(nn.Linear(d_in, d_out))
            if i < len(mlp_dims) - 3:  # the official Dropout(0.2), (0.2), (0.1) between the first four
                layers.append(nn.Dropout(0.0))
        self.mlp = nn.Module()
        self.mlp.layers = nn.Sequential(*layers)

    def forward(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        image_embeds = self.vision(pixel_values=pixel_values).last_hidden_state  # [B, 1 + N, Dv]
        image_atts = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        text = self.text(
            input_ids=input_ids,
            attention_mask=attention_mask,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=image_atts,
            is_decoder=False,
        )
        features = text.last_hidden_state[:, 0, :].float()  # [B, Dt] the [CLS] state
        r = self.mlp.layers(features)[:, 0]  # [B] (the head is float32)
        return (r - REWARD_MEAN) / REWARD_STD


def configs_from_checkpoint(state: dict[str, torch.Tensor], med_config: dict):
    """BLIP vision / text configs and MLP widths read off the checkpoint's shapes + med_config."""
    from transformers import BlipTextConfig, BlipVisionConfig

    width = state["blip.visual_encoder.cls_token"].shape[-1]
    patch = state["blip.visual_encoder.patch_embed.proj.weight"].shape[-1]
    tokens = state["blip.visual_encoder.pos_embed"].shape[1] - 1
    depth = len({k.split(".")[3] for k in state if k.startswith("blip.visual_encoder.blocks.")})
    vision = BlipVisionConfig(
        hidden_size=width,
        intermediate_size=state["blip.visual_encoder.blocks.0.mlp.fc1.weight"].shape[0],
        num_hidden_layers=depth,
        num_attention_heads=width // HEAD_DIM,
        patch_size=patch,
        image_size=int(round(tokens**0.5)) * patch,
        layer_norm_eps=1e-6,
        hidden_act="gelu",
        attention_dropout=0.0,
    )
    text = BlipTextConfig(
        vocab_size=med_config["vocab_size"],
        hidden_size=med_config["hidden_size"],
        encoder_hidden_size=width,
        intermediate_size=med_config["intermediate_size"],
        num_hidden_layers=med_config["num_hidden_layers"],
        num_attention_heads=med_config["num_attention_heads"],
        max_position_embeddings=med_config["max_position_embeddings"],
        hidden_act=med_config["hidden_act"],
        layer_norm_eps=med_config["layer_norm_eps"],
        pad_token_id=med_config.get("pad_token_id", 0),
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        is_decoder=True,  # is_decoder: build cross-attention
    )
    linears = sorted({int(k.split(".")[2]) for k in state if k.startswith("mlp.layers.")})
    mlp_dims = [state[f"mlp.layers.{linears[0]}.weight"].shape[1]] + [
        state[f"mlp.layers.{i}.weight"].shape[0] for i in linears
    ]
    return vision, text, mlp_dims


def load_model(checkpoint, med_config_path) -> ImageRewardModel:
    """ImageRewardModel from ImageReward.pt (read with weights_only) + med_config.json, strict."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    med_config = json.loads(open(med_config_path).read())
    vision, text, mlp_dims = configs_from_checkpoint(state, med_config)
    model = ImageRewardModel(vision, text, mlp_dims)
    ours = {official_to_ours(k): v for k, v in state.items()}
    ours.pop(None, None)
    params = model.state_dict()
    missing, unexpected = sorted(set(params) - set(ours)), sorted(set(ours) - set(params))
    if missing or unexpected:
        raise KeyError(
            f"{checkpoint} does not fit ImageReward: missing {missing[:4]}, unexpected {unexpected[:4]}"
        )
    model.load_state_dict(ours, strict=True)
    return model.eval()


def load_tokenizer(base: str):
    """bert-base-uncased (or a local copy) + BLIP's [DEC] bos and [ENC] tokens (blip.init_tokenizer)."""
    from transformers import BertTokenizer

    tokenizer = BertTokenizer.from_pretrained(base)
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    return tokenizer


class ImageRewardScorer(ModelScorer):
    name = "imagereward"

    def __init__(
        self,
        path: str,
        base: str | None = None,
        device: str = "cpu",
        dtype: str | None = None,
        batch_size: int = 16,
    ):
        super().__init__(device, dtype, batch_size)
        model = load_model(resolve_file(path, "ImageReward.pt"), resolve_file(path, "med_config.json"))
        self.model = model.to(device, self.dtype)
        self.model.mlp.float()  # the head runs in float32, as the official .float() features do
        self.tokenizer = load_tokenizer(base or "bert-base-uncased")

    def score_batch(self, images: list, prompts: list[str]) -> torch.Tensor:
        """b PIL images + b prompts -> normalised ImageReward float32 [b] (module docstring)."""
        pixels = torch.stack([clip_style(im, IMAGE_SIZE) for im in images])  # [b, 3, 224, 224]
        text = self.tokenizer(
            prompts, padding="max_length", truncation=True, max_length=TEXT_MAX_LENGTH, return_tensors="pt"
        )
        return self.model(
            pixels.to(self.device, self.dtype),
            text.input_ids.to(self.device),
            text.attention_mask.to(self.device),
        )
