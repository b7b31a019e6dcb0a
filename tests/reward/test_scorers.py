"""HPSv3, CLIP and ImageReward loaded from tiny checkpoints in the official layouts."""

import numpy as np
import pytest
import torch

from reward.config import ScorerConfig
from reward.preprocess import to_pil
from reward.worker import build_scorer

PROMPTS = [
    "a red circle at the top left on a blue background",
    "a photo of a cat",
    "a blue square " + "and more words " * 20,
    "",
]


def images(n=4, size=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def scorer(reward_models, kind, **kw):
    path, base = reward_models[kind]
    return build_scorer(ScorerConfig(name=kind, kind=kind, path=path, base=base, **kw))


@pytest.mark.parametrize("kind", ["hpsv3", "clip", "imagereward"])
def test_batched_scores_equal_one_at_a_time(reward_models, kind):
    s = scorer(reward_models, kind, batch_size=3)
    x = images()
    batched = s.score(x, PROMPTS)
    single = np.array([s.score(x[i : i + 1], PROMPTS[i : i + 1])[0] for i in range(4)])
    assert batched.dtype == np.float32 and batched.shape == (4,)
    np.testing.assert_allclose(batched, single, atol=1e-5)  # (right padding never reaches the score)
    assert np.ptp(batched) > 1e-3  # the scores depend on image and prompt
    other = s.score(x, PROMPTS[1:] + PROMPTS[:1])
    assert not np.allclose(batched, other)


def test_clip_is_the_cosine_of_clipmodel_embeddings(reward_models):
    from transformers import CLIPModel, CLIPTokenizer

    from reward.preprocess import clip_style

    s = scorer(reward_models, "clip")
    x = images(2)
    path = reward_models["clip"][0]
    model, tok = CLIPModel.from_pretrained(path), CLIPTokenizer.from_pretrained(path)
    pixels = torch.stack([clip_style(im) for im in to_pil(x)])
    text = tok(PROMPTS[:2], padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    with torch.no_grad():
        a = model.get_image_features(pixel_values=pixels)
        b = model.get_text_features(**text)
    a, b = (t if isinstance(t, torch.Tensor) else t.pooler_output for t in (a, b))
    expected = torch.nn.functional.cosine_similarity(a, b).numpy()
    np.testing.assert_allclose(s.score(x, PROMPTS[:2]), expected, atol=1e-5)
    assert np.all(np.abs(expected) <= 1)


def test_imagereward_normalisation_and_text_length(reward_models):
    from reward.imagereward import REWARD_MEAN, REWARD_STD, TEXT_MAX_LENGTH

    s = scorer(reward_models, "imagereward")
    assert (REWARD_MEAN, REWARD_STD, TEXT_MAX_LENGTH) == (0.16717362830052426, 1.0333394966054072, 35)
    ids = s.tokenizer(PROMPTS[2:3], padding="max_length", truncation=True, max_length=35).input_ids[0]
    assert len(ids) == 35  # long prompts are cut to 35 tokens, [CLS] … [SEP]
    # the raw head output r maps to (r − 0.16717) / 1.03334
    raw = {}
    s.model.mlp.layers.register_forward_hook(lambda m, i, o: raw.update(r=o[:, 0]))
    out = s.score(images(1), PROMPTS[:1])
    assert out[0] == pytest.approx((raw["r"][0].item() - 0.16717362830052426) / 1.0333394966054072, abs=1e-6)


def test_hpsv3_uses_mu_at_the_reward_token(reward_models):
    s = scorer(reward_models, "hpsv3")
    ids, mask, pixels, thw = s.inputs(to_pil(images(2)), PROMPTS[:2])
    reward_id = s.model.reward_token_id
    assert (ids == reward_id).sum(1).tolist() == [1, 1]
    image_id = s.model.vlm.config.image_token_id
    assert (ids == image_id).sum(1).tolist() == [256, 256]  # 64² -> 448² -> 32² patches -> 16² merged
    assert thw.tolist() == [[1, 32, 32], [1, 32, 32]] and pixels.shape == (2 * 1024, 3 * 2 * 14 * 14)
    with torch.no_grad():
        mu_sigma = s.model(ids, mask, pixels, thw)
    assert mu_sigma.shape == (2, 2)
    np.testing.assert_allclose(s.score(images(2), PROMPTS[:2]), mu_sigma[:, 0].numpy(), atol=1e-6)


def test_checkpoint_layout_errors_name_the_problem(reward_models, tmp_path):
    from reward.imagereward import load_model

    path = reward_models["imagereward"][0]
    state = torch.load(f"{path}/ImageReward.pt", weights_only=True)
    state["blip.text_encoder.some_new_layer.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "ImageReward.pt")
    with pytest.raises(KeyError, match="unexpected"):
        load_model(tmp_path / "ImageReward.pt", f"{path}/med_config.json")
    with pytest.raises(FileNotFoundError, match="HPSv3.safetensors"):
        scorer({"hpsv3": (str(tmp_path), reward_models["hpsv3"][1])}, "hpsv3")


def test_model_scorers_need_a_path():
    with pytest.raises(ValueError, match="has no path; set path to"):
        ScorerConfig(name="hps", kind="hpsv3")


def test_scoring_never_imports_torchvision(reward_models, monkeypatch):
    """Even where torchvision is installed, the scorers must not touch it."""
    import importlib.abc
    import sys

    class Forbid(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "torchvision":
                raise ImportError("torchvision imported by a scorer")
            return None

    monkeypatch.setattr(sys, "meta_path", [Forbid(), *sys.meta_path])
    for name in [
        m
        for m in sys.modules
        if m.startswith(
            (
                "reward.",
                "transformers.models.clip",
                "transformers.models.blip",
                "transformers.models.qwen2_vl",
            )
        )
    ]:
        monkeypatch.delitem(sys.modules, name)
    for kind in ("hpsv3", "clip", "imagereward"):
        scorer(reward_models, kind).score(images(1), PROMPTS[:1])
    assert not [m for m in sys.modules if m.split(".")[0] == "torchvision"]


def test_hpsv3_embedding_rows_come_from_the_checkpoint(reward_models, tmp_path):
    """A checkpoint whose embedding table (and lm_head) is longer than the tokenizer, padded with
    rows no token reaches, loads and scores exactly as the unpadded one: the table is sized from
    the checkpoint's rows. (Sized from the tokenizer it failed: a shape mismatch on copy.)"""
    from safetensors.torch import load_file, save_file

    path, base = reward_models["hpsv3"]
    state = load_file(f"{path}/HPSv3.safetensors")
    for key in ("model.embed_tokens.weight", "lm_head.weight"):  # the official (4.45) names
        state[key] = torch.cat([state[key], torch.randn(7, state[key].shape[1])])
    save_file(state, str(tmp_path / "HPSv3.safetensors"))
    s = build_scorer(ScorerConfig(name="hpsv3", kind="hpsv3", path=str(tmp_path), base=base))
    rows = s.model.vlm.model.language_model.embed_tokens.weight.shape[0]
    assert rows == len(s.processor.tokenizer) + 7 and s.model.vlm.lm_head.weight.shape[0] == rows
    np.testing.assert_array_equal(
        s.score(images(2), PROMPTS[:2]), scorer(reward_models, "hpsv3").score(images(2), PROMPTS[:2])
    )
