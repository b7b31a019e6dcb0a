"""The evaluation preview grid is never empty, even when a worker holds less than one row."""

import io

from PIL import Image

from rollout.config import ModelConfig, RolloutConfig
from rollout.plan import sde_plan
from rollout.worker import RolloutWorker

PROMPT = "a red circle at the top left on a blue background"


def test_eval_preview_of_fewer_images_than_a_row(random_tiny_dir):
    plan = sde_plan(3, noise_level=0.7, sde_kind="flow", train_last=True)
    worker = RolloutWorker(ModelConfig(path=str(random_tiny_dir)), RolloutConfig(num_steps=3), plan, 0, 0)
    images, info = worker.sample_ode([PROMPT] * 2, [1, 2], preview_cols=4)
    grid = Image.open(io.BytesIO(info["preview_png"]))
    assert images.shape[0] == 2
    # 2 tiles of 32·3 px side by side with 2 px padding: (96 + 2)·2 + 2 wide, 96 + 4 high
    assert grid.size == (2 * (96 + 2) + 2, 96 + 4)
