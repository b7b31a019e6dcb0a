import numpy as np
import pytest

from orchestrator.prompts import read_prompts
from rollout.tiny import world


def test_split_is_fixed_disjoint_and_matches_the_committed_files():
    train, heldout = world.split_prompts()
    assert len(train) == 405 and len(heldout) == 45
    assert not set(train) & set(heldout)
    assert read_prompts(world.prompt_file("train")) == train == world.prompts("train")
    assert read_prompts(world.prompt_file("heldout")) == heldout == world.prompts("heldout")
    # every word of a held-out prompt is seen in training: only the combination is new
    for attr in ("colour", "shape", "position", "background"):
        seen = {getattr(world.parse_prompt(p), attr) for p in train}
        assert {getattr(world.parse_prompt(p), attr) for p in heldout} <= seen


def test_prompt_round_trip_and_errors():
    scene = world.Scene("red", "circle", "top left", "blue")
    assert scene.prompt == "a red circle at the top left on a blue background"
    assert world.parse_prompt(scene.prompt) == scene
    with pytest.raises(ValueError, match="not a shapes-world prompt"):
        world.parse_prompt("a pink circle at the top left on a blue background")


def test_render_is_seeded_and_varies_what_the_prompt_does_not_fix():
    prompts = ["a red circle at the top left on a blue background"] * 8
    a = world.render_prompts(prompts, seed=3)
    assert a.shape == (8, 32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, world.render_prompts(prompts, seed=3))
    # nuisance: same prompt, different images (size, jitter, shade)
    assert len({img.tobytes() for img in a}) == 8
    # the object sits in the top-left quadrant: the bottom-right is pure background
    corner = a[:, 20:, 20:].reshape(8, -1, 3)
    assert (corner.std(axis=1) == 0).all()
