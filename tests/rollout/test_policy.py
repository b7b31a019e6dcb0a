import json

import numpy as np
import pytest
import torch

from rollout.policy import load_policy
from rollout.tiny import model as tiny_model

PROMPTS = [
    "a red circle at the top left on a blue background",
    "a cyan square at the center on a red background",
]


def test_load_from_save_pretrained_layout(random_tiny_dir):
    policy = load_policy(str(random_tiny_dir))
    assert policy.latent_shape == (64, 48)
    cond = policy.encode(PROMPTS)
    assert cond["prompt_embeds"].shape == (2, tiny_model.MAX_TOKENS["shapes"], 64) and cond[
        "pooled"
    ].shape == (2, 64)
    x = torch.randn(2, 64, 48)
    v = policy.velocity(x, torch.tensor([1.0, 0.5]), cond)
    assert v.shape == x.shape and v.dtype == torch.float32
    # the velocity depends on the prompt and on sigma
    assert not torch.allclose(v[0], policy.velocity(x[:1], 1.0, policy.encode(PROMPTS[1:]))[0])
    assert not torch.allclose(v[:1], policy.velocity(x[:1], 0.2, cond.select([0])))
    images = policy.decode(x)
    assert images.shape == (2, 32, 32, 3) and images.dtype == np.uint8


def test_tokenizer_is_word_level_with_eos_pooling(random_tiny_dir):
    policy = load_policy(str(random_tiny_dir))
    ids = policy.tokenizer(PROMPTS[0]).input_ids
    vocab = tiny_model.vocabulary()
    assert [vocab[i] for i in ids] == ["<bos>", *PROMPTS[0].split(), "<eos>"]
    assert policy.text_model.config.eos_token_id == vocab.index("<eos>") != 2


def test_patchify_round_trip():
    images = torch.rand(3, 32, 32, 3)
    latents = tiny_model.patchify(images)
    assert latents.shape == (3, 64, 48)
    assert torch.equal(tiny_model.unpatchify(latents, 32), images)
    # token 1 is the patch at row 0, columns 4..7
    assert torch.equal(latents[0, 1].reshape(4, 4, 3), images[0, 0:4, 4:8])


def test_unknown_path_and_kind_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.path"):
        load_policy(str(tmp_path / "nowhere"))
    (tmp_path / "raygrpo_model.json").write_text(json.dumps({"kind": "mystery"}))
    with pytest.raises(ValueError, match="kind 'mystery'"):
        load_policy(str(tmp_path))


def test_shipped_weights_load_and_are_small():
    root = tiny_model.WEIGHTS_DIR
    meta = json.loads((root / "raygrpo_model.json").read_text())
    assert meta["kind"] == "tiny" and "produced_by" in meta and "seed" in meta
    size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    assert size <= 20 * 2**20
    policy = load_policy("tiny")
    assert policy.latent_shape == (64, 48)
