"""Policies of the supported model families (tiny, FLUX.1, SD3.5); loaded via rollout.policy.load_policy."""
