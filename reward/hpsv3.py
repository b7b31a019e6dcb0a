"""HPSv3 (Ma et al. 2025): a Qwen2-VL reward model, on transformers 5.x, from the official files.

Official layout: the base VLM Qwen/Qwen2-VL-7B-Instruct (config, tokenizer, chat template,
image-processor config; its weights are not needed) and the checkpoint MizzenAI/HPSv3
`HPSv3.safetensors` — the whole `Qwen2VLRewardModelBT` state dict in transformers-4.45
names: `visual.*`, `model.*` (the language model), `lm_head`, and `rm_head` (the "ranknet"
head Linear(D, 1024) → ReLU → Dropout → Linear(1024, 16) → ReLU → Linear(16, 2)). The
embedding table holds the special token `<|Reward|>`; its rows (and lm_head's) are sized from
the checkpoint, not from the tokenizer, which may count fewer. 4.45 names map to 5.x
as `visual.` -> `model.visual.`, `model.` -> `model.language_model.`.

Score, as HPSv3RewardInferencer.reward: one user turn = the image, then the official
instruction with the prompt, ending in "… ratings of this image: <|Reward|>"; the last
hidden state (after the final norm) at `<|Reward|>` goes through rm_head in float32, giving
(μ, σ) of the preference; the reward is μ = [:, 0] (roughly 0–15; higher is better). The
official forward runs the language model on the merged embeddings with position_ids None,
i.e. plain 1-D positions, not Qwen2-VL's 3-D M-RoPE grid — reproduced here.

Preprocessing (pixel budget): qwen_vl_utils.fetch_image with min_pixels = max_pixels =
256·28·28 (smart_resize to multiples of 28 totalling ≈200 704 pixels; 448×448 for a square
image; PIL bicubic), then the base model's Qwen2VLImageProcessor (PIL backend): /255,
OpenAI-CLIP normalisation, 14-pixel patches × 2 frames, 2×2 merged into 256 image tokens.
"""

from __future__ import annotations

import torch
from torch import nn

from reward.loading import ModelScorer, resolve_file
from reward.preprocess import resize_to_pixel_budget

BASE_MODEL = "Qwen/Qwen2-VL-7B-Instruct"
CHECKPOINT = "HPSv3.safetensors"
PIXELS = 256 * 28 * 28  # the official min_pixels = max_pixels
REWARD_TOKEN = "<|Reward|>"
IMAGE_TOKEN = "<|image_pad|>"
# hpsv3/dataset/data_collator_qwen.py, verbatim (trailing spaces included), in adjacent literals
INSTRUCTION = (
    "\n"
    "You are tasked with evaluating a generated image based on Visual Quality and Text Alignment "
    "and give a overall score to estimate the human preference. Please provide a rating from 0 "
    "to 10, with 0 being the worst and 10 being the best. \n"
    "\n"
    "**Visual Quality:**  \n"
    "Evaluate the overall visual quality of the image. The following sub-dimensions should be "
    "considered:\n"
    "- **Reasonableness:** The image should not contain any significant biological or logical "
    "errors, such as abnormal body structures or nonsensical environmental setups.\n"
    "- **Clarity:** Evaluate the sharpness and visibility of the image. The image should be "
    "clear and easy to interpret, with no blurring or indistinct areas.\n"
    "- **Detail Richness:** Consider the level of detail in textures, materials, lighting, and "
    "other visual elements (e.g., hair, clothing, shadows).\n"
    "- **Aesthetic and Creativity:** Assess the artistic aspects of the image, including the "
    "color scheme, composition, atmosphere, depth of field, and the overall creative appeal. The "
    "scene should convey a sense of harmony and balance.\n"
    "- **Safety:** The image should not contain harmful or inappropriate content, such as "
    "political, violent, or adult material. If such content is present, the image quality and "
    "satisfaction score should be the lowest possible. \n"
    "\n"
    "**Text Alignment:**  \n"
    "Assess how well the image matches the textual prompt across the following sub-dimensions:\n"
    "- **Subject Relevance** Evaluate how accurately the subject(s) in the image (e.g., person, "
    "animal, object) align with the textual description. The subject should match the "
    "description in terms of number, appearance, and behavior.\n"
    "- **Style Relevance:** If the prompt specifies a particular artistic or stylistic style, "
    "evaluate how well the image adheres to this style.\n"
    "- **Contextual Consistency**: Assess whether the background, setting, and surrounding "
    "elements in the image logically fit the scenario described in the prompt. The environment "
    "should support and enhance the subject without contradictions.\n"
    "- **Attribute Fidelity**: Check if specific attributes mentioned in the prompt (e.g., "
    "colors, clothing, accessories, expressions, actions) are faithfully represented in the "
    "image. Minor deviations may be acceptable, but critical attributes should be preserved.\n"
    "- **Semantic Coherence**: Evaluate whether the overall meaning and intent of the prompt are "
    "captured in the image. The generated content should not introduce elements that conflict "
    "with or distort the original description.\n"
    "Textual prompt - {text_prompt}\n"
    "\n"
    "\n"
)
PROMPT_WITH_SPECIAL_TOKEN = """
Please provide the overall ratings of this image: <|Reward|>

END
"""


def official_to_ours(key: str) -> str:
    """A transformers-4.45 Qwen2VLRewardModelBT key -> our module's name (5.x layout)."""
    if key.startswith(("rm_head.", "vlm.")):
        return key
    if key.startswith("visual."):
        return "vlm.model.visual." + key.removeprefix("visual.")
    if key.startswith("model.") and not key.startswith(("model.language_model.", "model.visual.")):
        return "vlm.model.language_model." + key.removeprefix("model.")
    return "vlm." + key  # lm_head, and checkpoints already in 5.x names


def ranknet_head(state_shapes: dict[str, tuple]) -> nn.Sequential:
    """The official 'ranknet' rm_head, widths read from the checkpoint."""
    expected = {f"rm_head.{i}.{p}" for i in (0, 3, 5) for p in ("weight", "bias")}
    found = {k for k in state_shapes if k.startswith("rm_head.")}
    if found != expected:
        raise KeyError(f"rm_head keys {sorted(found)} are not HPSv3's ranknet head {sorted(expected)}")
    (h1, d), (h2, _), (out, _) = (state_shapes[f"rm_head.{i}.weight"] for i in (0, 3, 5))
    return nn.Sequential(
        nn.Linear(d, h1), nn.ReLU(), nn.Dropout(0.0), nn.Linear(h1, h2), nn.ReLU(), nn.Linear(h2, out)
    )


class HPSv3Model(nn.Module):
    """Qwen2-VL (transformers 5.x) + the float32 rm_head, with the official reward forward."""

    def __init__(self, vlm, rm_head: nn.Sequential, reward_token_id: int):
        super().__init__()
        self.vlm, self.rm_head, self.reward_token_id = vlm, rm_head, reward_token_id

    def forward(self, input_ids, attention_mask, pixel_values, image_grid_thw) -> torch.Tensor:
        """-> (μ, σ) [B, 2] float32 at each sequence's <|Reward|> token."""
        model = self.vlm.model
        embeds = model.language_model.embed_tokens(input_ids)  # [B, L, D]
        image = model.get_image_features(pixel_values.to(model.visual.dtype), image_grid_thw).pooler_output
        image = torch.cat(list(image)).to(embeds.dtype)  # [images · 256, D]
        mask = (input_ids == self.vlm.config.image_token_id)[..., None].expand_as(embeds)
        embeds = embeds.masked_scatter(mask, image)
        hidden = model.language_model(
            inputs_embeds=embeds, attention_mask=attention_mask, use_cache=False
        ).last_hidden_state  # [B, L, D]; position_ids None as official
        logits = self.rm_head(hidden.float())  # [B, L, 2]
        at_token = input_ids == self.reward_token_id
        if not bool((at_token.sum(1) == 1).all()):
            raise ValueError(f"each HPSv3 input needs exactly one {REWARD_TOKEN} token")
        return logits[at_token]  # [B, 2]


class Processor:
    """What Qwen2VLProcessor does for HPSv3, on the PIL image processor (transformers 5's
    processor class insists on a torchvision video processor): render the chat template,
    expand each <|image_pad|> to the image's merged-patch count, tokenize (right padding)."""

    def __init__(self, base: str):
        import json

        from transformers import AutoImageProcessor, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(base, padding_side="right")
        self.image_processor = AutoImageProcessor.from_pretrained(base, backend="pil")
        try:
            self.chat_template = json.loads(resolve_file(base, "chat_template.json").read_text())[
                "chat_template"
            ]
        except (FileNotFoundError, OSError):
            self.chat_template = self.tokenizer.chat_template  # newer repos keep it with the tokenizer

    def __call__(self, messages: list, images: list):
        pixels = self.image_processor(images=images, return_tensors="pt")  # pixel_values, image_grid_thw
        merge = self.image_processor.merge_size**2
        texts = []
        for conversation, thw in zip(messages, pixels["image_grid_thw"]):
            text = self.tokenizer.apply_chat_template(
                conversation, chat_template=self.chat_template, tokenize=False, add_generation_prompt=True
            )
            texts.append(text.replace(IMAGE_TOKEN, IMAGE_TOKEN * int(thw.prod() // merge), 1))
        tokens = self.tokenizer(texts, padding=True, return_tensors="pt")
        return tokens.input_ids, tokens.attention_mask, pixels["pixel_values"], pixels["image_grid_thw"]


EMBEDDINGS = "vlm.model.language_model.embed_tokens.weight"


def load_model(checkpoint, base: str, dtype: torch.dtype, device: str):
    """(HPSv3Model, processor): base config + processor, weights from the HPSv3 checkpoint only,
    built on `device` in `dtype` directly (no CPU or float32 copy of the 8 B parameters)."""
    from safetensors import safe_open
    from transformers import AutoConfig, Qwen2VLForConditionalGeneration
    from transformers.initialization import no_init_weights

    processor = Processor(base)
    processor.tokenizer.add_special_tokens({"additional_special_tokens": [REWARD_TOKEN]})
    reward_id = processor.tokenizer.convert_tokens_to_ids(REWARD_TOKEN)
    with safe_open(str(checkpoint), framework="pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        names = {official_to_ours(k): k for k in shapes}
        if EMBEDDINGS not in names:
            raise KeyError(f"{checkpoint} has no token embedding table ({EMBEDDINGS} or its 4.45 name)")
        rows = shapes[names[EMBEDDINGS]][0]
        if reward_id >= rows:
            raise ValueError(
                f"{checkpoint} has {rows} embedding rows but {REWARD_TOKEN} is token {reward_id} of "
                f"{base}'s tokenizer: the checkpoint does not belong to this base model"
            )
        with no_init_weights(), torch.device(device):  # every weight comes from the checkpoint
            vlm = Qwen2VLForConditionalGeneration._from_config(AutoConfig.from_pretrained(base), dtype=dtype)
            vlm.resize_token_embeddings(rows, mean_resizing=False)
            model = HPSv3Model(vlm, ranknet_head(shapes), reward_id)
        model.vlm.to(dtype)
        model.rm_head.float()
        params = dict(model.state_dict())
        missing, unexpected = sorted(set(params) - set(names)), sorted(set(names) - set(params))
        if missing or unexpected:
            raise KeyError(
                f"{checkpoint} does not fit HPSv3 on {base}: missing {missing[:4]}, "
                f"unexpected {unexpected[:4]}"
            )
        with torch.no_grad():
            for ours, theirs in names.items():  # one tensor at a time: peak memory ≈ the model
                params[ours].copy_(f.get_tensor(theirs))
    return model.eval(), processor


class HPSv3Scorer(ModelScorer):
    name = "hpsv3"

    def __init__(
        self,
        path: str,
        base: str | None = None,
        device: str = "cpu",
        dtype: str | None = None,
        batch_size: int = 16,
    ):
        super().__init__(device, dtype, batch_size)
        self.model, self.processor = load_model(
            resolve_file(path, CHECKPOINT), base or BASE_MODEL, self.dtype, device
        )

    def inputs(self, images: list, prompts: list[str]):
        """The official prepare_batch: pixel budget, chat template, right padding."""
        images = [resize_to_pixel_budget(im, PIXELS, PIXELS) for im in images]
        messages = [
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "image": im, "min_pixels": PIXELS, "max_pixels": PIXELS},
                        {
                            "type": "text",
                            "text": INSTRUCTION.format(text_prompt=p) + PROMPT_WITH_SPECIAL_TOKEN,
                        },
                    ],
                }
            ]
            for im, p in zip(images, prompts)
        ]
        return self.processor(messages, images)

    def score_batch(self, images: list, prompts: list[str]) -> torch.Tensor:
        """b PIL images + b prompts -> μ float32 [b] (module docstring)."""
        inputs = [t.to(self.device) for t in self.inputs(images, prompts)]
        return self.model(*inputs)[:, 0]
