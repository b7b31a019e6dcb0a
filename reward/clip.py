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

import numpy as np
import torch

from reward.loading import pick_dtype
from reward.preprocess import batches, to_pil


class CLIPScorer:
    name = "clip"

    def __init__(self, path: str, device: str = "cpu", dtype: str | None = None, batch_size: int = 16):
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        self.device, self.batch_size = device, batch_size
        self.model = CLIPModel.from_pretrained(path, dtype=pick_dtype(dtype, device)).to(device).eval()
        self.image_processor = AutoImageProcessor.from_pretrained(path, backend="pil")
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.max_length = self.model.config.text_config.max_position_embeddings

    @torch.no_grad()
    def score(self, images: np.ndarray, prompts: list[str]) -> np.ndarray:
        """uint8 [B, H, W, 3] + B prompts -> cosine similarities float32 [B]."""
        pil = to_pil(images)
        out = []
        for sl in batches(len(pil), self.batch_size):
            pixels = self.image_processor(images=pil[sl], return_tensors="pt").pixel_values  # [b, 3, 224, 224]
            text = self.tokenizer(prompts[sl], padding="max_length", truncation=True, max_length=self.max_length,
                                  return_tensors="pt")
            image_embeds = self.model.get_image_features(pixel_values=pixels.to(self.device, self.model.dtype))
            text_embeds = self.model.get_text_features(input_ids=text.input_ids.to(self.device),
                                                       attention_mask=text.attention_mask.to(self.device))
            image_embeds = _embeds(image_embeds).float()  # [b, P]
            text_embeds = _embeds(text_embeds).float()
            out.append(torch.nn.functional.cosine_similarity(image_embeds, text_embeds, dim=-1).cpu())
        return torch.cat(out).numpy().astype(np.float32)


def _embeds(output) -> torch.Tensor:
    """get_*_features returns a tensor, or (newer transformers) an output with pooler_output."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output
