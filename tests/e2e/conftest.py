def small_config(**sections):
    """The tiny config shrunk for tests: 2 groups of 4, 5 steps, one rollout worker (tests of
    splitting, sync and recovery ask for 2: each worker is a process that imports diffusers), no
    before/after eval. The actor-system tests train chunk_grpo with the model's own fine-tuning
    default (full for tiny: every weight sharded by ZeRO, synced and checkpointed) and no
    held-out judge or monitor, as tiny.yaml did before its default became the measured LoRA
    MixGRPO recipe; tests of that default run tiny.yaml as a user does (test_job_submit.py,
    test_algorithms.py)."""
    from orchestrator.config import load_config

    overrides = [
        "algorithm=chunk_grpo",
        "model.finetune=null",  # unset: full fine-tuning for tiny, LoRA for FLUX / SD3
        "orchestrator.heldout_every=0",
        "reward.heldout=[]",
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
