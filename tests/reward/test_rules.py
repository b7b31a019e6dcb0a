import numpy as np
import pytest

from reward.rules import AlignmentScorer, PreferenceScorer, parse
from rollout.tiny import world

ALL = [s.prompt for s in world.all_scenes()]


def test_ground_truth_renders_are_aligned():
    images = world.render_prompts(ALL, seed=0)
    scores = AlignmentScorer().score(images, ALL)
    assert scores.dtype == np.float32 and scores.shape == (len(ALL),)
    assert scores.mean() >= 0.98
    assert (scores >= 0.95).mean() >= 0.95  # tiny circles (r ≈ 3 px) can read as squares


def test_render_of_a_different_prompt_scores_low():
    rng = np.random.default_rng(1)
    scenes = world.all_scenes()
    images = world.render_prompts(ALL, seed=1)
    others = []
    for s in scenes:  # a prompt differing in every attribute
        cands = [
            q
            for q in scenes
            if q.colour != s.colour
            and q.shape != s.shape
            and q.position != s.position
            and q.background != s.background
        ]
        others.append(cands[rng.integers(len(cands))].prompt)
    scores = AlignmentScorer().score(images, others)
    assert scores.mean() <= 0.1 and scores.max() <= 0.3


def test_one_wrong_attribute_costs_about_a_quarter():
    prompt = "a red circle at the center on a blue background"
    images = world.render_prompts([prompt] * 16, seed=2)
    for wrong in (
        "a green circle at the center on a blue background",
        "a red square at the center on a blue background",
        "a red circle at the top left on a blue background",
        "a red circle at the center on a yellow background",
    ):
        s = AlignmentScorer().score(images, [wrong] * 16)
        assert 0.6 <= s.mean() <= 0.8, wrong


def test_preference_likes_big_objects_and_ignores_the_prompt():
    scenes = [world.parse_prompt(p) for p in ALL[:120]]
    lo, hi = world.AREA_MIN, world.AREA_MAX
    try:
        world.AREA_MIN = world.AREA_MAX = lo
        s_small = world.render(scenes, np.random.default_rng(0))
        world.AREA_MIN = world.AREA_MAX = 110.0  # a little above the data's largest (90 px)
        s_big = world.render(scenes, np.random.default_rng(0))
    finally:
        world.AREA_MIN, world.AREA_MAX = lo, hi
    pref = PreferenceScorer()
    assert pref.score(s_small, ALL[:120]).mean() < 0.1
    # the ceiling is reachable by faithful images: big objects, still aligned
    assert pref.score(s_big, ALL[:120]).mean() >= 0.95
    assert AlignmentScorer().score(s_big, ALL[:120]).mean() >= 0.95
    mid = pref.score(world.render_prompts(ALL, seed=0), ALL).mean()
    assert 0.3 < mid < 0.7  # the data distribution is middling by construction
    assert np.array_equal(pref.score(s_big, ALL[:120]), pref.score(s_big, ALL[120:240]))


def test_preference_can_be_gamed_by_smearing_colour():
    prompt = "a red circle at the center on a blue background"
    images = world.render_prompts([prompt] * 4, seed=0)
    smeared = images.copy()
    smeared[:, 4:28, 4:28] = images[:, 16:17, 16:17]  # the object's colour over half the image
    assert PreferenceScorer().score(smeared).min() == 1.0
    assert AlignmentScorer().score(smeared, [prompt] * 4).max() < 0.8


def test_blank_images_and_bad_prompts():
    blank = np.full((2, 32, 32, 3), 128, np.uint8)
    assert PreferenceScorer().score(blank).tolist() == [0.0, 0.0]
    assert AlignmentScorer().score(blank, ALL[:2]).max() <= 0.25
    with pytest.raises(ValueError, match="cannot read prompt"):
        parse("a red blob at the center on a blue background")
    with pytest.raises(ValueError, match="uint8"):
        PreferenceScorer().score(blank.astype(np.float32))
