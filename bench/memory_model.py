"""Real-size architectures on the meta device, and the live-memory tracker bench/memory.py measures with.

Configs are written out here (nothing can be downloaded), each from the file named beside it.
Building them on the meta device allocates nothing; running them there executes every op's meta
kernel, so shapes and dtypes are real, and `LiveBytes` adds up the storages that are alive at
each moment exactly as a GPU's caching allocator would see them (without its fragmentation).
Attention is routed to the flash kernel (`flash_attention`), as PyTorch does for bf16 FLUX / SD3
on a GPU: O(L) memory; the CPU build's math fallback would materialise the L×L scores.
"""

from __future__ import annotations

import contextlib
import weakref

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

GB = 1e9

# black-forest-labs/FLUX.1-dev transformer/config.json (diffusers FluxTransformer2DModel)
FLUX_DEV = dict(
    patch_size=1,
    in_channels=64,
    num_layers=19,
    num_single_layers=38,
    attention_head_dim=128,
    num_attention_heads=24,
    joint_attention_dim=4096,
    pooled_projection_dim=768,
    guidance_embeds=True,
    axes_dims_rope=(16, 56, 56),
)
# black-forest-labs/FLUX.1-dev vae/config.json (AutoencoderKL, 16 latent channels)
FLUX_VAE = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=16,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    norm_num_groups=32,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    use_quant_conv=False,
    use_post_quant_conv=False,
    scaling_factor=0.3611,
    shift_factor=0.1159,
    sample_size=1024,
)
# stabilityai/stable-diffusion-3.5-large transformer/config.json (SD3Transformer2DModel, MMDiT 38 blocks)
SD35_LARGE = dict(
    sample_size=128,
    patch_size=2,
    in_channels=16,
    num_layers=38,
    attention_head_dim=64,
    num_attention_heads=38,
    joint_attention_dim=4096,
    caption_projection_dim=2432,
    pooled_projection_dim=2048,
    out_channels=16,
    pos_embed_max_size=192,
    qk_norm="rms_norm",
)
# stabilityai/stable-diffusion-3.5-medium transformer/config.json (MMDiT-X: dual attention in blocks 0-12)
SD35_MEDIUM = dict(
    sample_size=128,
    patch_size=2,
    in_channels=16,
    num_layers=24,
    attention_head_dim=64,
    num_attention_heads=24,
    joint_attention_dim=4096,
    caption_projection_dim=1536,
    pooled_projection_dim=2048,
    out_channels=16,
    pos_embed_max_size=384,
    qk_norm="rms_norm",
    dual_attention_layers=tuple(range(13)),
)
# stabilityai/stable-diffusion-3.5-{large,medium} vae/config.json: FLUX's layout, its own scaling
SD3_VAE = {**FLUX_VAE, "scaling_factor": 1.5305, "shift_factor": 0.0609}

ARCHS = {  # model.path -> (family, transformer config, VAE config, published transformer size)
    "black-forest-labs/FLUX.1-dev": ("flux", FLUX_DEV, FLUX_VAE, "12B"),
    "stabilityai/stable-diffusion-3.5-large": ("sd3", SD35_LARGE, SD3_VAE, "8.1B"),
    "stabilityai/stable-diffusion-3.5-medium": ("sd3", SD35_MEDIUM, SD3_VAE, "2.5B"),
}
TEXT_TOKENS = {"flux": lambda n: n or 512, "sd3": lambda n: 77 + (n or 256)}  # T5 (+ CLIP) sequence length

# Qwen/Qwen2-VL-7B-Instruct config.json (HPSv3's base; HPSv3 adds one <|Reward|> row, negligible)
QWEN2VL_7B = dict(
    text=dict(
        hidden_size=3584,
        intermediate_size=18944,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        vocab_size=152064,
        tie_word_embeddings=False,
    ),
    vision=dict(
        depth=32,
        embed_dim=1280,
        mlp_ratio=4,
        num_heads=16,
        hidden_size=3584,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
    ),
)
# openai/clip-vit-large-patch14 config.json
CLIP_L14 = dict(
    text=dict(
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        vocab_size=49408,
        max_position_embeddings=77,
    ),
    vision=dict(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        patch_size=14,
        image_size=224,
    ),
    projection_dim=768,
)
# THUDM/ImageReward: BLIP ViT-L/16 at 224 + med_config.json (BERT-base with cross-attention)
# + MLP 768-1024-128-64-16-1
IMAGEREWARD = dict(
    vision=dict(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        patch_size=16,
        image_size=224,
    ),
    text=dict(
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        vocab_size=30524,
        encoder_hidden_size=1024,
    ),
    mlp=(768, 1024, 128, 64, 16, 1),
)


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def build_transformer(family: str, config: dict, device="meta", dtype=torch.bfloat16):
    """The diffusers transformer, created in `dtype` on `device` (no float32 copy ever exists)."""
    from diffusers import FluxTransformer2DModel, SD3Transformer2DModel

    cls = FluxTransformer2DModel if family == "flux" else SD3Transformer2DModel
    with torch.device(device), default_dtype(dtype):
        return cls(**config)


def build_vae(config: dict, device="meta", dtype=torch.bfloat16):
    from diffusers import AutoencoderKL

    with torch.device(device), default_dtype(dtype):
        return AutoencoderKL(**config)


def reward_parameters(kind: str) -> int:
    """Parameters of a reward model's architecture, counted on the meta device."""
    from transformers import (
        BlipVisionConfig,
        CLIPConfig,
        CLIPModel,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
    )

    with torch.device("meta"):
        if kind == "hpsv3":
            cfg = Qwen2VLConfig(text_config=QWEN2VL_7B["text"], vision_config=QWEN2VL_7B["vision"])
            model = Qwen2VLForConditionalGeneration(cfg)
            return sum(p.numel() for p in model.parameters()) + 2 * 3584 * 1024  # + the ranknet head (≈7 M)
        if kind == "clip":
            cfg = CLIPConfig(
                text_config=CLIP_L14["text"],
                vision_config=CLIP_L14["vision"],
                projection_dim=CLIP_L14["projection_dim"],
            )
            return sum(p.numel() for p in CLIPModel(cfg).parameters())
        if kind == "imagereward":
            from transformers import BlipTextConfig, BlipTextModel, BlipVisionModel

            text = BlipTextConfig(**IMAGEREWARD["text"])
            n = sum(
                p.numel() for p in BlipVisionModel(BlipVisionConfig(**IMAGEREWARD["vision"])).parameters()
            )
            n += sum(p.numel() for p in BlipTextModel(text, add_pooling_layer=False).parameters())
            dims = IMAGEREWARD["mlp"]
            return n + sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))
    raise ValueError(f"no architecture for reward kind {kind!r}")


class LiveBytes(TorchDispatchMode):
    """Bytes of tensor storage alive, and their peak, for everything created under the mode.
    Storages that exist before (weights, inputs) are `ignore`d: views of them cost nothing."""

    def __init__(self, ignore=()):
        super().__init__()
        self.live = self.peak = 0
        self._known: dict[int, int] = {}
        for t in ignore:
            self._known[t.untyped_storage()._cdata] = 0

    def _free(self, key: int, nbytes: int) -> None:
        self.live -= nbytes
        self._known.pop(key, None)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                key = storage._cdata
                if key not in self._known:  # a new allocation
                    self._known[key] = storage.nbytes()
                    self.live += storage.nbytes()
                    weakref.finalize(storage, self._free, key, storage.nbytes())
                    self.peak = max(self.peak, self.live)
        return out


def _flash(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    if attn_mask is not None:
        raise ValueError("the memory model's flash attention takes no mask")
    op = (
        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
        if query.device.type == "cpu"
        else torch.ops.aten._scaled_dot_product_flash_attention
    )
    return op(query, key, value, dropout_p, is_causal, scale=scale)[0]


@contextlib.contextmanager
def flash_attention():
    """F.scaled_dot_product_attention -> the flash kernel (what bf16 FLUX / SD3 get on a GPU)."""
    before = F.scaled_dot_product_attention
    F.scaled_dot_product_attention = _flash
    try:
        yield
    finally:
        F.scaled_dot_product_attention = before


def transformer_inputs(
    family: str,
    config: dict,
    rows: int,
    resolution: int,
    text_tokens: int,
    device="meta",
    dtype=torch.bfloat16,
) -> dict:
    """One forward's inputs for `rows` samples at `resolution` px (8× VAE)."""
    side = resolution // 8

    def rand(*shape, dt=dtype):
        return torch.randn(*shape, device=device, dtype=dt)

    if family == "flux":
        tokens = (side // 2) ** 2
        return dict(
            hidden_states=rand(rows, tokens, config["in_channels"]),
            encoder_hidden_states=rand(rows, text_tokens, config["joint_attention_dim"]),
            pooled_projections=rand(rows, config["pooled_projection_dim"]),
            timestep=rand(rows, dt=torch.float32),
            guidance=rand(rows, dt=torch.float32),
            img_ids=torch.zeros(tokens, 3, device=device),
            txt_ids=torch.zeros(text_tokens, 3, device=device),
            return_dict=False,
        )
    return dict(
        hidden_states=rand(rows, config["in_channels"], side, side),
        encoder_hidden_states=rand(rows, text_tokens, config["joint_attention_dim"]),
        pooled_projections=rand(rows, config["pooled_projection_dim"]),
        timestep=rand(rows, dt=torch.float32),
        return_dict=False,
    )


def image_tokens(family: str, resolution: int) -> int:
    """Latent tokens of one image: (res / 16)² for FLUX's packed 2×2 patches and SD3's 2×2 patchify."""
    return (resolution // 16) ** 2


def peak_bytes(module, inputs: dict, *, train: bool) -> int:
    """Peak bytes allocated by one forward (+ backward when `train`) of `module` on `inputs`.
    In training each parameter's gradient is dropped once accumulated, as DeepSpeed moves it into
    a reduce bucket and frees it: gradients are counted by the ZeRO accounting, not here."""
    tensors = [
        *module.parameters(),
        *module.buffers(),
        *(v for v in inputs.values() if isinstance(v, torch.Tensor)),
    ]
    hooks = (
        [
            p.register_post_accumulate_grad_hook(lambda p: setattr(p, "grad", None))
            for p in module.parameters()
            if p.requires_grad
        ]
        if train
        else []
    )
    tracker = LiveBytes(ignore=tensors)
    try:
        with flash_attention(), torch.set_grad_enabled(train), tracker:
            out = module(**inputs)
            out = out[0] if isinstance(out, (tuple, list)) else out
            if train:
                out.float().sum().backward()
    finally:
        for h in hooks:
            h.remove()
    return tracker.peak
