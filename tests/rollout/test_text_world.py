import numpy as np
import pytest
import torch

from orchestrator.prompts import read_prompts
from rollout.policy import load_policy
from rollout.tiny import model as tiny_model
from rollout.tiny import text_world as tw


def test_split_is_fixed_disjoint_and_matches_the_committed_files():
    train, heldout = tw.split_strings()
    assert len(train) == 4000 and len(heldout) == 64 and not set(train) & set(heldout)
    assert read_prompts(tw.prompt_file("train")) == [tw.prompt_of(t) for t in train]
    assert read_prompts(tw.prompt_file("heldout")) == [tw.prompt_of(t) for t in heldout]
    assert (tw.prompts("train"), tw.prompts("heldout")) == (
        [tw.prompt_of(t) for t in train],
        [tw.prompt_of(t) for t in heldout],
    )
    # every character of a held-out string is seen in training: only the string is new
    assert set("".join(heldout)) <= set("".join(train)) == set(tw.ALPHABET)


def test_prompt_round_trip_and_errors():
    assert tw.parse_prompt('a sign that says "k7pa"') == "k7pa"
    for bad in (
        'a sign that says "k0qa"',
        'a sign that says "ab"',
        "a red circle at the center on a blue background",
    ):
        with pytest.raises(ValueError, match="not a text-world prompt"):
            tw.parse_prompt(bad)


def test_render_is_seeded_and_varies_what_the_prompt_does_not_fix():
    prompts = [tw.prompt_of("k7pa")] * 8
    a = tw.render_prompts(prompts, np.random.default_rng(3))
    assert a.shape == (8, 32, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, tw.render_prompts(prompts, np.random.default_rng(3)))
    assert len({im.tobytes() for im in a}) == 8  # colours differ
    corners = a[:, 0, 0].astype(int)
    assert (corners >= 0.78 * 255 - 1).all()  # light backgrounds
    assert (a.reshape(8, -1, 3).min(axis=1) <= 0.3 * 255 + 1).all()  # dark ink somewhere


def test_character_j_is_drawn_in_cell_j_whatever_the_length():
    # Same nuisance draw (seed): a 3-character string is the 4-character one without its last cell.
    three = tw.render_text("k7p", np.random.default_rng(5))
    four = tw.render_text("k7pa", np.random.default_rng(5))
    # cell 3 starts at pen + 3 advances = 8 + 36.1 > 40
    assert np.array_equal(three[:, :40], four[:, :40]) and not np.array_equal(three, four)
    # The ink of a lone "x" in cell j is centred on slot_centre(j), averaged over the nuisance.
    for j in range(tw.SLOTS):
        xs, ys = [], []
        for seed in range(4):
            image = tw.render_text(" " * j + "x", np.random.default_rng(seed)).astype(float)
            ink = image.max(axis=2).max() - image.max(axis=2)  # dark text on a light background
            rows, cols = np.indices(ink.shape)
            xs.append((ink * (cols + 0.5)).sum() / ink.sum())  # pixel i spans [i, i + 1)
            ys.append((ink * (rows + 0.5)).sum() / ink.sum())
        x, y = tw.slot_centre(j)
        assert abs(np.mean(xs) - x) < 0.6, (j, np.mean(xs), x)
        assert abs(np.mean(ys) - y) < 2.5, (
            j,
            np.mean(ys),
            y,
        )  # "x" sits on the baseline, below the font's middle
        assert x == pytest.approx(
            8 + (j + 0.5) * 12.047, abs=0.01
        )  # cell j: pen 8, advance 0.6023 em × 20 px


def test_text_tokens_sit_on_their_character_cells_in_every_loading_path(tmp_path):
    ids = tiny_model.text_ids("text")  # [8, 3]: <bos>, c1..c4, <eos>/<pad>...
    advance = (
        tw.slot_centre(1)[0] - tw.slot_centre(0)[0]
    )  # DejaVu Sans Mono Bold: 0.602 em × 20 px = 12.04 px
    assert advance == pytest.approx(12.04, abs=0.01)
    # character 1 (token 1) in cell 0: x = 8 + 0.5 · 12.04 = 14.02 px -> column 14.02 / 4 − 0.5 = 3.005
    assert ids[1].tolist() == pytest.approx([0.0, 16 / 4 - 0.5, 3.005], abs=1e-3)
    assert (
        ids[:, 2].diff().tolist() == pytest.approx([advance / 4] * 7, abs=1e-4) and (ids[:, 1] == 3.5).all()
    )
    assert not tiny_model.text_ids("shapes").any()  # FLUX's zeros for the shapes model
    tokenizer, text_encoder, transformer = tiny_model.build(seed=0, name="text")
    tiny_model.save(tmp_path, tokenizer, text_encoder, transformer, {"produced_by": "test"}, "text")
    policy = load_policy(str(tmp_path))
    torch.testing.assert_close(policy.txt_ids, ids, atol=1e-4, rtol=0)  # rounded to 4 decimals in the json
    cond = policy.encode([tw.prompt_of("k7pa")])
    x = torch.randn(1, 128, 48)
    aligned = policy.velocity(x, 0.5, cond)
    policy.txt_ids = None  # what a raygrpo_model.json without txt_ids loads (zeros)
    assert not torch.allclose(aligned, policy.velocity(x, 0.5, cond), atol=1e-4)  # the positions are used
    policy.txt_ids = ids[:5]
    with pytest.raises(ValueError, match="prompt_embeds has 8 tokens but the model's txt_ids"):
        policy.velocity(x, 0.5, cond)


def test_tokenizer_reads_only_the_quoted_characters():
    tok = tiny_model.build_tokenizer("text")
    ids = tok(['a sign that says "k7pa"', 'any words "yy9"'], padding="max_length", max_length=8).input_ids
    vocab = tiny_model.vocabulary("text")
    assert [vocab[i] for i in ids[0]] == ["<bos>", "k", "7", "p", "a", "<eos>", "<pad>", "<pad>"]
    assert [vocab[i] for i in ids[1][:5]] == ["<bos>", "y", "y", "9", "<eos>"]


def test_a_text_model_loads_and_makes_32x64_images(tmp_path):
    tokenizer, text_encoder, transformer = tiny_model.build(seed=0, name="text")
    tiny_model.save(tmp_path, tokenizer, text_encoder, transformer, {"produced_by": "test"}, "text")
    policy = load_policy(str(tmp_path))
    assert policy.latent_shape == (8 * 16, 48)
    images = tw.render_prompts([tw.prompt_of("k7pa"), tw.prompt_of("wet")], np.random.default_rng(0))
    x0 = policy.encode_images(images)  # [2, 128, 48]
    assert x0.shape == (2, 128, 48)
    assert np.array_equal(policy.decode(x0), images)  # patchify / unpatchify are inverse for H != W
    cond = policy.encode([tw.prompt_of("k7pa"), tw.prompt_of("wet")])
    assert cond["prompt_embeds"].shape == (2, 8, 64)
    v = policy.velocity(torch.randn(2, 128, 48), 0.5, cond)
    assert v.shape == (2, 128, 48) and torch.isfinite(v).all()


def test_twins_pair_up_the_alphabet():
    # 12 disjoint pairs covering all 24 characters; the map is its own inverse with no fixed point
    assert len(tw.TWINS) == 12 and sorted("".join(tw.TWINS)) == sorted(tw.ALPHABET)
    assert set(tw.TWIN) == set(tw.ALPHABET)
    assert all(tw.TWIN[tw.TWIN[c]] == c != tw.TWIN[c] for c in tw.ALPHABET)
    assert (tw.TWIN["2"], tw.TWIN["7"], tw.TWIN["h"], tw.TWIN["k"]) == ("7", "2", "k", "h")


def test_caption_noise_swaps_each_character_with_probability_p():
    # default_rng(0).random(4) = 0.637, 0.270, 0.041, 0.017: at p = 0.4 the last three swap
    assert tw.caption_noise("k7pa", np.random.default_rng(0), 0.4) == "k2yd"
    assert tw.caption_noise("k7pa", np.random.default_rng(0), 0.0) == "k7pa"
    assert tw.caption_noise("k7pa", np.random.default_rng(0), 1.0) == "h2yd"
    rng = np.random.default_rng(1)
    text = tw.ALPHABET * 500  # 12 000 characters: the swap rate's s.d. is 0.0045 at p = 0.4
    noisy = tw.caption_noise(text, rng, 0.4)
    assert abs(np.mean([a != b for a, b in zip(text, noisy)]) - 0.4) < 0.02
    assert all(b in (a, tw.TWIN[a]) for a, b in zip(text, noisy))


def test_render_captioned_draws_the_twins_not_the_caption():
    prompts = [tw.prompt_of("k7pa")]
    # at p = 1 every character is its twin: the render of "h2yd" with the same nuisance draw
    # (the noise takes one uniform per character from the rng before the renderer's draws)
    assert np.array_equal(
        tw.render_captioned(prompts, np.random.default_rng(4), 1.0)[0],
        tw.render_text("h2yd", _after(np.random.default_rng(4), 4)),
    )
    assert np.array_equal(
        tw.render_captioned(prompts, np.random.default_rng(4), 0.0),
        tw.render_prompts(prompts, _after(np.random.default_rng(4), 4)),
    )


def _after(rng: np.random.Generator, draws: int) -> np.random.Generator:
    rng.random(draws)
    return rng


def test_pretrain_refuses_caption_noise_outside_the_text_world(capsys):
    from rollout.tiny import pretrain

    for argv, message in (
        (["--world", "shapes", "--caption-noise", "0.4"], "applies to --world text only"),
        (["--world", "text", "--caption-noise", "1.5"], "give a value in [0, 1]"),
    ):
        with pytest.raises(SystemExit):
            pretrain.main([*argv, "--steps", "1", "--out", "/nonexistent"])
        assert message in capsys.readouterr().err
