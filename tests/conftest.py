import os
import sys
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# tests/fixtures (model builders for tests and benches, never installed) import as `tests.fixtures`
# from the repository root; Ray workers get the root too (Ray adds the driver's working directory)
ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.append(ROOT)

import torch  # noqa: E402

torch.set_num_threads(2)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def random_tiny_dir(tmp_path_factory):
    """A randomly initialised tiny model written with save_pretrained (nothing downloaded)."""
    from rollout.tiny import model as tiny_model

    path = tmp_path_factory.mktemp("tiny_random")
    tokenizer, text_encoder, transformer = tiny_model.build(seed=0)
    tiny_model.save(path, tokenizer, text_encoder, transformer, {"produced_by": "tests/conftest.py"})
    return path


@pytest.fixture(scope="session")
def flux_dir(tmp_path_factory):
    """A tiny random FluxPipeline in the diffusers layout (tests/fixtures/models.py)."""
    from tests.fixtures.models import write_flux_pipeline

    return write_flux_pipeline(tmp_path_factory.mktemp("flux") / "pipeline")


@pytest.fixture(scope="session")
def sd3_dir(tmp_path_factory):
    """A tiny random StableDiffusion3Pipeline in the diffusers layout."""
    from tests.fixtures.models import write_sd3_pipeline

    return write_sd3_pipeline(tmp_path_factory.mktemp("sd3") / "pipeline")


@pytest.fixture(scope="session")
def reward_models(tmp_path_factory):
    """Tiny random reward models in their official layouts: {kind: (path, base)}."""
    from tests.fixtures.reward_models import write_clip, write_hpsv3, write_imagereward

    root = tmp_path_factory.mktemp("reward_models")
    base, hps = write_hpsv3(root / "qwen2vl_base", root / "hpsv3")
    ir = write_imagereward(root / "imagereward")
    return {
        "hpsv3": (str(hps), str(base)),
        "clip": (str(write_clip(root / "clip")), None),
        "imagereward": (str(ir), str(ir / "tokenizer")),
    }


@pytest.fixture(scope="session")
def local_ray():
    """A private Ray on loopback for the session's tests, stopped afterwards (every test shuts
    its own actors down; one Ray start instead of one per module saves ~7 s each)."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, num_cpus=4, log_to_driver=False)
    yield ray
    ray.shutdown()
