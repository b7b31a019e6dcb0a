def small_config(**sections):
    """The tiny config shrunk for tests: 2 groups of 4, 5 steps, one rollout worker (tests of
    splitting, sync and recovery ask for 2: each worker is a process that imports diffusers), no
    before/after eval."""
    from orchestrator.config import load_config

    overrides = [
        "rollout.num_steps=5",
        "rollout.group_size=4",
        "rollout.num_workers=1",
        "learner.micro_batch=8",
        "orchestrator.prompts_per_iter=2",
        "orchestrator.iterations=2",
        "orchestrator.eval_before_after=false",
    ]
    for key, value in sections.items():
        overrides.append(f"{key.replace('__', '.')}={value}")
    return load_config("deploy/configs/tiny.yaml", overrides)
