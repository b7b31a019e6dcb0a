import os

import pytest


@pytest.fixture(scope="module")
def local_ray():
    """A private Ray on loopback for the module's tests, stopped afterwards."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, num_cpus=4, log_to_driver=False)
    yield ray
    ray.shutdown()


def small_config(**sections):
    """The tiny config shrunk for tests: 2 groups of 4, 4 steps, no before/after eval."""
    from orchestrator.config import load_config

    overrides = [
        "rollout.num_steps=5", "rollout.group_size=4", "rollout.num_workers=2",
        "learner.chunks.sizes=[2, 2]", "learner.micro_batch=8",
        "orchestrator.prompts_per_iter=2", "orchestrator.iterations=2", "orchestrator.eval_before_after=false",
    ]
    for key, value in sections.items():
        overrides.append(f"{key.replace('__', '.')}={value}")
    return load_config("deploy/configs/tiny.yaml", overrides)
