"""CLIP score: cosine similarity of CLIP's image and text embeddings (transformers CLIPModel).

Preprocessing: the checkpoint's own CLIPImageProcessor, PIL backend (no torchvision) — for
OpenAI / LAION CLIPs: shorter side to 224 (bicubic), centre crop 224, /255, normalise with
the OpenAI CLIP mean / std. Text: the checkpoint's tokenizer, padded and truncated to the
text model's 77 positions.

Scale: the raw cosine, in [−1, 1]; matching image–prompt pairs typically score 0.2–0.4 with
ViT-L/14 and unrelated ones ~0.1. It is not multiplied by 100 (the `logit_scale` convention)
nor by the CLIPScore paper's 2.5·max(cos, 0): advantages are normalised per group, so a
scale changes nothing in training, and the cosine reads plainly in the metrics.
"""

from __future__ import annotations

import torch

from reward.loading import ModelScorer


class CLIPScorer(ModelScorer):
    name = "clip"

    def __init__(self, path: str, device: str = "cpu", dtype: str | None = None, batch_size: int = 16):
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        super().__init__(device, dtype, batch_size)
        self.model = CLIPModel.from_pretrained(path, dtype=self.dtype).to(device).eval()
        self.image_processor = AutoImageProcessor.from_pretrained(path, backend="pil")
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.max_length = self.model.config.text_config.max_position_embeddings

    def score_batch(self, images: list, prompts: list[str]) -> torch.Tensor:
        """b PIL images + b prompts -> cosine similarities float32 [b]."""
        pixels = self.image_processor(images=images, return_tensors="pt").pixel_values  # [b, 3, 224, 224]
        text = self.tokenizer(
            prompts, padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        image_embeds = self.model.get_image_features(pixel_values=pixels.to(self.device, self.model.dtype))
        text_embeds = self.model.get_text_features(
            input_ids=text.input_ids.to(self.device), attention_mask=text.attention_mask.to(self.device)
        )
        image_embeds = _embeds(image_embeds).float()  # [b, P]
        text_embeds = _embeds(text_embeds).float()
        return torch.nn.functional.cosine_similarity(image_embeds, text_embeds, dim=-1)


def _embeds(output) -> torch.Tensor:
    """get_*_features returns a tensor, or (newer transformers) an output with pooler_output."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output
