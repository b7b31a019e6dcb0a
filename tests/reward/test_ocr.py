"""The OCR rewards (real PP-OCRv4 / PP-OCRv6 ONNX models from their wheels) and fidelity."""

from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from reward.config import ScorerConfig
from reward.fidelity import FidelityScorer, background_texture
from reward.ocr import OCRScorer, PPOCRv4LikelihoodScorer, PPOCRv4Scorer, PPOCRv6Scorer
from reward.ocr import edit_distance, ocr_reward, target_text
from reward.worker import RewardWorker
from rollout.tiny import text_world

PROMPTS = [text_world.prompt_of(t) for t in ("k7pa", "wet", "d5s4", "xmh")]
SCENE_PROMPT = 'a city street at night, a neon sign that says "Hello World"'


def scene() -> np.ndarray:
    """A 512² image as a FLUX / SD3.5 policy paints one: sky, a board off-centre, the text on
    two lines (uint8 [1, 512, 512, 3])."""
    font = ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts/ttf/DejaVuSans-Bold.ttf"), 48)
    image = Image.new("RGB", (512, 512), (70, 120, 180))
    draw = ImageDraw.Draw(image)
    draw.rectangle((40, 230, 330, 420), fill=(240, 230, 200))
    draw.text((60, 250), "Hello", font=font, fill=(20, 20, 20))
    draw.text((60, 340), "World", font=font, fill=(20, 20, 20))
    return np.asarray(image)[None]


def test_flow_grpo_formula_by_hand():
    # 1 − min(dist, len) / len after lower-casing and removing spaces; target ⊂ read scores 1
    assert ocr_reward("k7pa", "k7pa") == 1.0
    assert ocr_reward("K7 PA", "k7pa") == 1.0  # case and spaces ignored
    assert ocr_reward("xk7pay", "k7pa") == 1.0  # flow_grpo: `if prompt in recognized_text: dist = 0`
    assert ocr_reward("k7p", "k7pa") == 0.75  # one deletion: 1 − 1/4
    assert ocr_reward("k9pb", "k7pa") == 0.5  # two substitutions: 1 − 2/4
    assert ocr_reward("", "k7pa") == 0.0 and ocr_reward("zzzzzzzzz", "k7pa") == 0.0  # dist clipped at len
    assert edit_distance("kitten", "sitting") == 3
    assert target_text('a sign that says "Hello World" at night') == "Hello World"
    with pytest.raises(ValueError, match="names no text in double quotes"):
        OCRScorer.validate_prompts(["a red circle at the top left on a blue background"])


def test_ocr_scorers_as_ray_reward_actors(local_ray):
    """Each OCR kind runs as a reward actor (ONNX Runtime on 1 thread): correct renders of the
    prompts' text score >= 0.95, blank images 0, renders of other text less."""
    rng = np.random.default_rng(0)
    truth = text_world.render_prompts(PROMPTS, rng)
    blank = np.full_like(truth, 235)
    wrong = text_world.render_prompts(PROMPTS[1:] + PROMPTS[:1], rng)
    actors = {
        kind: local_ray.remote(RewardWorker).remote(ScorerConfig(name=kind, kind=kind, batch_size=3))
        for kind in ("ocr", "ocr_heldout")
    }
    for kind, actor in actors.items():
        right, empty, other = local_ray.get([actor.score.remote(x, PROMPTS) for x in (truth, blank, wrong)])
        # a 512² scene through the same actor: found by the detector, both lines joined (below)
        assert local_ray.get(actor.score.remote(scene(), [SCENE_PROMPT])).tolist() == [1.0], kind
        assert right.dtype == np.float32 and right.shape == (4,)
        assert right.min() >= 0.95, (kind, right)
        assert empty.tolist() == [0.0] * 4, (kind, empty)
        assert other.mean() < 0.5, (kind, other)
        info = local_ray.get(actor.info.remote())
        assert info["images"] == 13 and info["scorer"] == kind
    for actor in actors.values():
        local_ray.kill(actor)


def test_large_images_are_read_through_text_detection_as_flow_grpo_does():
    """flow_grpo/ocr.py runs PaddleOCR's detector + recogniser and joins the lines: so do ocr and
    ocr_heldout on images taller than 96 px. Recognition alone squeezes a 512² scene into one
    48-px-high crop and reads next to nothing: a reward near 0 whatever the image, which a FLUX
    run could not learn from."""
    big, blank = scene(), np.full((1, 512, 512, 3), 200, np.uint8)
    for cls in (PPOCRv4Scorer, PPOCRv6Scorer):
        auto = cls(batch_size=4)
        lines = text_world.render_prompts(PROMPTS, np.random.default_rng(0))
        assert auto.detects(big) and not auto.detects(lines)
        assert auto.read(big)[0].replace(" ", "") == "HelloWorld", cls  # top line first
        assert auto.score(big, [SCENE_PROMPT]).tolist() == [1.0]
        # the lines' order counts: edit_distance("helloworld", "worldhello") = 8 of 10
        assert auto.score(big, ['a sign that says "World Hello"']).tolist() == [pytest.approx(0.2)]
        assert auto.score(blank, [SCENE_PROMPT]).tolist() == [0.0]
        # one squeezed crop: PP-OCRv4 reads "D" (0.1), PP-OCRv6 nothing
        assert cls(batch_size=4, detect=False).score(big, [SCENE_PROMPT])[0] <= 0.1
    # the detector runs on the reward actor's threads too (issue 14: ONNX threads pinned to its CPUs)
    v4, v6 = PPOCRv4Scorer(threads=2), PPOCRv6Scorer(threads=2)
    v4.read(big), v6.read(big)
    for session in (v4.pipeline.text_det.infer.session, v6.engine.text_det.session.session):
        options = session.get_session_options()
        assert (options.intra_op_num_threads, options.inter_op_num_threads) == (2, 1)
    with pytest.raises(ValueError, match="use kind ocr, which finds the lines first"):
        PPOCRv4LikelihoodScorer().score(big, [SCENE_PROMPT])
    with pytest.raises(ValueError, match="use kind ocr, which finds the lines first"):
        PPOCRv4LikelihoodScorer(detect=True).score(scene()[:, :64, :64], [SCENE_PROMPT])


def test_detect_is_checked_in_the_config():
    with pytest.raises(ValueError, match=r"detect applies to the ocr kinds .* not preference; remove it"):
        ScorerConfig(name="p", kind="preference", detect=True)
    with pytest.raises(ValueError, match="ocr_likelihood scores each image as one text line"):
        ScorerConfig(name="ll", kind="ocr_likelihood", detect=True)
    assert ScorerConfig(name="ll", kind="ocr_likelihood", detect=False).detect is False


def test_the_heldout_judge_is_pp_ocrv6():
    scorer = PPOCRv6Scorer()
    scorer.read(text_world.render_prompts(PROMPTS[:1], np.random.default_rng(0)))  # loads the model lazily
    assert str(scorer.engine.cfg.Rec.model_path).endswith("/PP-OCRv6_rec_small.onnx")


def test_fidelity_ranks_flat_over_textured_backgrounds():
    rng = np.random.default_rng(1)
    truth = text_world.render_prompts(PROMPTS, rng)
    assert background_texture(truth).max() < 1e-3  # flat backgrounds, glyph edges masked out
    grid = truth.astype(np.int16)
    grid[:, ::4, :, :] += 12  # a 4-pixel patch grid painted on everything
    grid[:, :, ::4, :] += 12
    grid = np.clip(grid, 0, 255).astype(np.uint8)
    scorer = FidelityScorer()
    assert scorer.score(truth).tolist() == pytest.approx([1.0] * 4, abs=1e-3)
    # a 12-grey-level line every 4 rows and columns: |laplacian| about 12·2 on the lines
    assert (scorer.score(grid) < 0.5).all()


def test_prompt_validation_needs_no_model():
    from reward.worker import validate_prompts

    validate_prompts(ScorerConfig(name="ocr", kind="ocr"), PROMPTS)
    with pytest.raises(ValueError, match=r"prompt 'a sign with no quotes' names no text"):
        validate_prompts(ScorerConfig(name="ocr", kind="ocr_heldout"), [PROMPTS[0], "a sign with no quotes"])
    validate_prompts(ScorerConfig(name="f", kind="fidelity"), ["anything"])


def test_onnx_threads_follow_threads_else_num_cpus():
    from reward.worker import _ocr

    def threads(**fields):
        scorer = _ocr(ScorerConfig(name="ocr", kind="ocr", **fields), "cpu")
        return scorer.model.session.session.get_session_options().intra_op_num_threads

    assert threads() == 1  # no CPU reserved: one thread
    assert threads(num_cpus=2) == 2
    assert threads(threads=2) == 2  # beyond the reservation: a synchronous run's idle core
    with pytest.raises(ValueError, match="threads"):
        ScorerConfig(name="ocr", kind="ocr", threads=0)


def test_ctc_likelihood_reward_by_hand():
    from reward.ocr import ctc_likelihood_reward

    # T = 2 columns, target "a": alignments (a, a), (a, -), (-, a): p = .25 + .25 + .25 = .75
    half = np.array([[0.5, 0.5], [0.5, 0.5]])
    assert ctc_likelihood_reward(half, "a", {"a": [1]}) == pytest.approx(1 + np.log(0.75) / 10)
    # both cases of a letter are one class: columns 1 (a) and 2 (A) summed
    cased = np.array([[0.2, 0.3, 0.5], [0.2, 0.3, 0.5]])  # blank .2, a .8 a column
    p = 0.8 * 0.8 + 0.8 * 0.2 + 0.2 * 0.8
    assert ctc_likelihood_reward(cased, "a", {"a": [1, 2]}) == pytest.approx(1 + np.log(p) / 10)
    # "aa" needs a blank between the two a's: T = 3 -> only (a, -, a); p = .5^3, per character / 2
    third = np.full((3, 2), 0.5)
    assert ctc_likelihood_reward(third, "aa", {"a": [1]}) == pytest.approx(1 + np.log(0.125) / 2 / 10)
    assert ctc_likelihood_reward(third, "aaaa", {"a": [1]}) == 0.0  # impossible: floored at 0
    with pytest.raises(ValueError, match=r"character set has no \['z'\]"):
        ctc_likelihood_reward(half, "az", {"a": [1]})


def test_ocr_likelihood_ranks_right_over_one_wrong_or_blank_over_other_text():
    from reward.worker import _ocr

    rng = np.random.default_rng(0)
    truth = text_world.render_prompts(PROMPTS, rng)
    near = text_world.render_prompts([text_world.prompt_of(t) for t in ("k7pd", "wex", "d5s3", "xmk")], rng)
    blank = np.full_like(truth, 235)
    other = text_world.render_prompts(PROMPTS[1:] + PROMPTS[:1], rng)
    scorer = _ocr(ScorerConfig(name="ocr_likelihood", kind="ocr_likelihood", batch_size=3), "cpu")
    right, one_wrong, empty, wrong = (scorer.score(x, PROMPTS) for x in (truth, near, blank, other))
    assert right.dtype == np.float32 and right.min() >= 0.9, right
    assert (one_wrong < right).all() and (empty < right).all(), (one_wrong, empty)
    # one wrong character and a blank canvas both score about half (the floor is 10 nats a
    # character); the Flow-GRPO formula gives them 0.67-0.75 and 0
    assert 0.3 < one_wrong.mean() < 0.8 and 0.3 < empty.mean() < 0.7, (one_wrong, empty)
    assert wrong.max() < 0.1 and wrong.max() < min(one_wrong.min(), empty.min()), wrong
