"""Precomputed prompt embeddings (`raygrpo embed`), so rollout and learner workers never load T5.

Layout of a cache directory:
    index.json                   {"kind", "model", "fields", "prompts": {prompt: [shard file, key]}}
    embeddings-00000.safetensors {"<key>.<field>": tensor [...]} for up to `shard_size` prompts
where key = sha1(prompt)[:20] (a prompt can hold any character; its hash is a safe tensor
name) and the shard's metadata maps keys back to prompts. Tensors are stored in the text
encoders' dtype (bf16 on GPUs, as DanceGRPO caches them) and become float32 in Conditioning.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

INDEX = "index.json"


def prompt_key(prompt: str) -> str:
    return hashlib.sha1(prompt.encode()).hexdigest()[:20]


def write_embeddings(
    text_encoder,
    prompts: list[str],
    out_dir: str | Path,
    *,
    kind: str,
    model: str,
    batch_size: int = 16,
    shard_size: int = 1024,
) -> Path:
    """Encode `prompts` (deduplicated, order kept) with `text_encoder` and write the cache."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prompts = list(dict.fromkeys(prompts))
    index: dict[str, list[str]] = {}
    fields: list[str] = []
    for s, lo in enumerate(range(0, len(prompts), shard_size)):
        shard_prompts = prompts[lo : lo + shard_size]
        name = f"embeddings-{s:05d}.safetensors"
        tensors = {}
        for b in range(0, len(shard_prompts), batch_size):
            batch = shard_prompts[b : b + batch_size]
            encoded = text_encoder(batch)
            fields = sorted(encoded)
            for i, p in enumerate(batch):
                for f in fields:
                    tensors[f"{prompt_key(p)}.{f}"] = encoded[f][i].detach().cpu().contiguous()
        keys = {prompt_key(p): p for p in shard_prompts}
        save_file(tensors, str(out / name), metadata={"prompts": json.dumps(keys)})
        index.update({p: [name, prompt_key(p)] for p in shard_prompts})
    meta = {"kind": kind, "model": model, "fields": fields, "prompts": index}
    (out / INDEX).write_text(json.dumps(meta, indent=1) + "\n")
    return out


class EmbeddingCache:
    """A TextEncoder that reads `raygrpo embed`'s cache: prompts -> {field: [B, ...]}."""

    def __init__(self, directory: str | Path, *, kind: str, model_path: str):
        self.dir = Path(directory).expanduser()
        if not (self.dir / INDEX).exists():
            raise FileNotFoundError(
                f"model.embeddings {str(self.dir)!r} has no {INDEX}; write it with "
                "`raygrpo embed --config FILE --prompts FILE`, or unset model.embeddings"
            )
        meta = json.loads((self.dir / INDEX).read_text())
        if meta["kind"] != kind:
            raise ValueError(
                f"model.embeddings {str(self.dir)!r} holds {meta['kind']} embeddings but model.path "
                f"{model_path!r} is a {kind} model; re-run `raygrpo embed` for this model"
            )
        self.model, self.fields, self.index = meta["model"], meta["fields"], meta["prompts"]

    def __call__(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        from safetensors import safe_open

        missing = [p for p in prompts if p not in self.index]
        if missing:
            raise KeyError(
                f"prompt {missing[0]!r} (and {len(missing) - 1} more) is not in the embedding cache "
                f"{self.dir}; run `raygrpo embed --config FILE --prompts FILE` with a prompt file that "
                "holds it"
            )
        by_shard: dict[str, list[tuple[int, str]]] = {}
        for i, p in enumerate(prompts):
            shard, key = self.index[p]
            by_shard.setdefault(shard, []).append((i, key))
        found: dict[int, dict[str, torch.Tensor]] = {}
        for shard, items in by_shard.items():
            with safe_open(str(self.dir / shard), framework="pt") as f:
                for i, key in items:
                    found[i] = {field: f.get_tensor(f"{key}.{field}") for field in self.fields}
        return {field: torch.stack([found[i][field] for i in range(len(prompts))]) for field in self.fields}
