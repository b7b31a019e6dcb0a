"""The `algorithm` presets: each algorithm's defaults as its paper and official code run it.

PRESETS[algorithm] maps a field path, e.g. ("learner", "clip_range"), to (value, source): the
file, line or table of the official code or paper the value comes from. A preset fills the
fields the YAML file and the command line leave out or set to null (`apply_preset`, run by
`Config`'s validator in orchestrator/config.py, which records the source per field in
config_sources.yaml). docs/algorithms.md restates each algorithm and what we do differently.
"""

from __future__ import annotations

import copy

ALGORITHMS = ("dance_grpo", "chunk_grpo", "e_grpo", "flow_grpo", "mix_grpo")
# (section, field) -> (value, source), the sources citing these commits of the official code:
DANCE = "XueZeyue/DanceGRPO@15cc71d"  # scripts/finetune/finetune_flux_grpo.sh = the 16-GPU default
GCPO = "xingzhejun/GCPO@ea6cc4d"  # scripts/finetune/finetune_hpsv3_chunk.sh, paper Table 8
EGRPO = "shengjun-zhang/VisualGRPO@ae619bf"  # fastvideo/config/config.yaml + E-GRPO paper §4.1
FLOW = "yifan123/flow_grpo@ac4c86e"  # config/base.py + config/grpo.py (geneval_sd3 / general_ocr_sd3)
MIX = "Tencent-Hunyuan/MixGRPO@e5cdd6a"  # scripts/finetune/finetune_flux_grpo_MixGRPO.sh
_COMMON = {  # the same in all five references
    ("learner", "weight_decay"): (1e-4, "every reference: --weight_decay 0.0001 / adam_weight_decay 1e-4"),
    ("learner", "advantage_groups"): ("prompt", "every reference but E-GRPO: z-scores per prompt group"),
    ("learner", "advantage_std"): ("group", "per-group unbiased std + 1e-8"),
    ("learner", "train_last_step"): (False, "no reference trains the last transition"),
    ("learner", "kl_coef"): (0.0, "no KL term"),
    ("learner", "chunks", "mode"): ("step", "chunks of one transition (step-level GRPO)"),
    ("learner", "chunks", "weighting"): ("uniform", "a uniformly random subset of the trainable steps"),
    ("learner", "max_grad_norm"): (1.0, "--max_grad_norm 1.0"),
    ("learner", "clip_range"): (1e-4, "--clip_range 1e-4"),
}
PRESETS: dict[str, dict[tuple[str, ...], tuple[object, str]]] = {
    "dance_grpo": {
        **_COMMON,
        ("rollout", "plan"): (
            "sde",
            f"{DANCE} fastvideo/train_grpo_flux.py:250: every step flux_step(sde_solver=True)",
        ),
        ("rollout", "sde_kind"): ("dance", f"{DANCE} fastvideo/train_grpo_flux.py:131-171: g = eta"),
        ("rollout", "noise_level"): (0.3, f"{DANCE} finetune_flux_grpo.sh:46 --eta 0.3"),
        ("learner", "timestep_fraction"): (
            0.6,
            f"{DANCE} finetune_flux_grpo.sh:56; int(15·0.6) = 9 of 15 steps, train_grpo_flux.py:570",
        ),
        ("learner", "minibatches"): (
            3,
            f"{DANCE} finetune_flux_grpo.sh:29,34,52: 1 prompt × 12 per rank, a step every A = 4 "
            "samples (train_grpo_flux.py:609)",
        ),
        ("learner", "minibatch_order"): (
            "in_order",
            f"{DANCE} train_grpo_flux.py:571: samples in order, not shuffled",
        ),
        ("reward", "aggregation"): ("advantage", "DanceGRPO paper §3: advantages per reward model, summed"),
    },
    "chunk_grpo": {
        **_COMMON,
        ("rollout", "plan"): (
            "sde",
            f"{GCPO} fastvideo/train_grpo_flux_hpsv3.py:184: every step flow_grpo_step (step_end_idx 100)",
        ),
        ("rollout", "sde_kind"): (
            "flow",
            f"{GCPO} train_grpo_flux_hpsv3.py flow_grpo_step: g = eta·sqrt(σ/(1−σ'))",
        ),
        ("rollout", "noise_level"): (0.7, f"{GCPO} finetune_hpsv3_chunk.sh:27 --eta 0.7"),
        ("learner", "chunks", "mode"): (
            "scaled",
            "the release's default fixed list (--new_fix_chunk), its boundaries "
            "scaled to the grid's trainable steps: itself on GCPO's 16, [1, 2, 3, 5] on the "
            "tiny model's 11. Chosen over the v3 paper's adaptive chunks (mode: adaptive) "
            "by bench/results/chunking.md on the shapes task",
        ),
        ("learner", "chunks", "sizes"): (
            [2, 3, 4, 7],
            f"{GCPO} finetune_hpsv3_chunk.sh:46 --new_chunk_list '[2, 3, 4, 7]'",
        ),
        ("learner", "timestep_fraction"): (
            0.5,
            f"{GCPO} finetune_hpsv3_chunk.sh:36; int(K·0.5) chunks, train_grpo_flux_hpsv3.py:662",
        ),
        ("learner", "clip_range"): (
            5e-5,
            f"{GCPO} finetune_hpsv3_chunk.sh:39,42 --clip_range = --right_clip_range 5e-5",
        ),
        ("learner", "max_grad_norm"): (0.01, f"{GCPO} finetune_hpsv3_chunk.sh:30 --max_grad_norm 0.01"),
        ("learner", "minibatches"): (
            2,
            f"{GCPO} finetune_hpsv3_chunk.sh:11,16: 2 prompts × 12 per rank, A = 12 -> 2 steps",
        ),
        ("learner", "minibatch_order"): (
            "shuffled",
            f"{GCPO} train_grpo_flux_hpsv3.py:673: torch.randperm over the rank's samples",
        ),
        ("reward", "aggregation"): (
            "advantage",
            "GCPO trains one reward model; advantage-level when several",
        ),
    },
    "e_grpo": {
        **_COMMON,
        ("rollout", "plan"): ("entropy_windows", "E-GRPO paper §3.3, ALGORITHMS.md §2.2-2.3"),
        ("rollout", "sde_kind"): (
            "flow",
            f"{EGRPO} fastvideo/workers/sampler/flux_sampler.py:133-193 _flow_grpo_step",
        ),
        ("rollout", "noise_level"): (0.7, f"{EGRPO} fastvideo/config/config.yaml:59 eta 0.7"),
        ("rollout", "entropy_threshold"): (
            2.2,
            "E-GRPO paper §4.1: τ = 2.2 on e^h per element (ablation 0, 1.8, 2.0, 2.2, 2.6)",
        ),
        ("rollout", "branch_window"): (0.5, "E-GRPO paper Table 3: the first 8 of 16 steps are active"),
        ("learner", "advantage_groups"): (
            "column",
            f"{EGRPO} fastvideo/workers/rollout_buffer.py:112-128: per (prompt, step) column",
        ),
        ("learner", "minibatch_order"): (
            "column",
            f"{EGRPO} fastvideo/trainer/grpo_trainer.py:296-337: an AdamW step per column",
        ),
        ("learner", "minibatches"): (1, "unused by order 'column' (one step per active column)"),
        ("reward", "aggregation"): (
            "reward",
            f"{EGRPO} fastvideo/workers/reward_manager/reward_manager.py:185-194: Σ w_m·r_m",
        ),
    },
    "flow_grpo": {
        **_COMMON,
        ("rollout", "plan"): (
            "sde",
            f"{FLOW} flow_grpo/diffusers_patch/sd3_pipeline_with_logprob.py:161: every step SDE",
        ),
        ("rollout", "sde_kind"): ("flow", f"{FLOW} flow_grpo/diffusers_patch/sd3_sde_with_logprob.py:45-48"),
        ("rollout", "noise_level"): (0.7, f"{FLOW} config/base.py:54 sample.noise_level 0.7"),
        ("learner", "timestep_fraction"): (
            1.0,
            f"{FLOW} config/grpo.py:127 0.99 of 10 steps = int(9.9) = the first 9, "
            "scripts/train_sd3.py:345,864: every transition but the last",
        ),
        ("learner", "kl_coef"): (
            0.04,
            f"{FLOW} config/grpo.py:52,91 train.beta 0.04 (OCR, GenEval; PickScore 0.01)",
        ),
        ("learner", "advantage_std"): (
            "batch",
            f"{FLOW} config/grpo.py:54 global_std True, flow_grpo/stat_tracking.py:27",
        ),
        ("learner", "minibatches"): (
            2,
            f"{FLOW} config/grpo.py:121,125: gradient_accumulation = num_batches / 2 -> 2 updates per epoch",
        ),
        ("learner", "minibatch_order"): (
            "shuffled",
            f"{FLOW} scripts/train_sd3.py:829 torch.randperm(total_batch_size)",
        ),
        ("reward", "aggregation"): (
            "reward",
            f"{FLOW} flow_grpo/rewards.py:381-400 multi_score: Σ w_m·r_m ('avg')",
        ),
    },
    "mix_grpo": {
        **_COMMON,
        ("rollout", "plan"): (
            "sliding_window",
            f"{MIX} fastvideo/train_grpo_flux.py:236-239: SDE in the window, ODE elsewhere",
        ),
        ("rollout", "sde_kind"): ("flow", f"{MIX} finetune_flux_grpo_MixGRPO.sh:196 --flow_grpo_sampling"),
        ("rollout", "noise_level"): (0.7, f"{MIX} finetune_flux_grpo_MixGRPO.sh:55 eta=0.7"),
        ("rollout", "sde_window"): (4, f"{MIX} finetune_flux_grpo_MixGRPO.sh:58 group_size=4"),
        ("rollout", "window_shift_every"): (25, f"{MIX} finetune_flux_grpo_MixGRPO.sh:57 iters_per_group=25"),
        ("rollout", "window_stride"): (1, f"{MIX} finetune_flux_grpo_MixGRPO.sh:60 prog_overlap_step=1"),
        ("learner", "timestep_fraction"): (
            1.0,
            f"{MIX} fastvideo/train_grpo_flux.py:543-544: every window step trained",
        ),
        ("learner", "minibatches"): (
            4,
            f"{MIX} finetune_flux_grpo_MixGRPO.sh:68,128: 1 prompt × 12 per rank, A = 3 -> 4 steps",
        ),
        ("learner", "minibatch_order"): (
            "in_order",
            f"{MIX} fastvideo/train_grpo_flux.py:543: samples in order",
        ),
        ("reward", "aggregation"): ("advantage", f"{MIX} finetune_flux_grpo_MixGRPO.sh:62 advantage_aggr"),
    },
}


def apply_preset(data: dict) -> tuple[dict, list[tuple[str, ...]]]:
    """`data` with the preset of its `algorithm` filled into every field it leaves out or sets
    to null, and the paths filled."""
    data = copy.deepcopy(data)
    filled = []
    for path, (value, _source) in PRESETS.get(data.get("algorithm", "chunk_grpo"), {}).items():
        node = data
        for key in path[:-1]:
            if node.get(key) is None:
                node[key] = {}
            node = node[key]
            if not isinstance(node, dict):
                break
        else:
            if node.get(path[-1]) is None:
                node[path[-1]] = copy.deepcopy(value)
                filled.append(path)
    return data, filled
