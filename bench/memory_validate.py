"""The memory tracker against reality: a scaled-down FLUX (bf16, LoRA, gradient checkpointing),
one forward + backward on the meta device and for real on the CPU, both under the same
LiveBytes tracker, and the real run's resident-memory growth (a fresh subprocess, /proc/self/statm
sampled every ms). Equal meta and CPU peaks mean the meta run counts what real tensors allocate;
RSS growth adds the allocator's own slack (and, being a high-water mark of the whole process,
nothing freed earlier)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SMALL = dict(
    patch_size=1,
    in_channels=64,
    num_layers=2,
    num_single_layers=4,
    attention_head_dim=128,
    num_attention_heads=4,
    joint_attention_dim=1024,
    pooled_projection_dim=768,
    guidance_embeds=True,
    axes_dims_rope=(16, 56, 56),
)
RESOLUTION, TEXT, ROWS = 512, 128, 2
SCRIPT = f"""
import json, os, sys, threading, time, torch
sys.path[:0] = [{str(HERE)!r}, {str(HERE.parent)!r}]
from memory_model import build_transformer, peak_bytes, transformer_inputs
from rollout.config import ModelConfig
from rollout.models.common import setup_trainable
page = os.sysconf("SC_PAGE_SIZE")
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page
device = sys.argv[1]
torch.manual_seed(0)
model = build_transformer("flux", {SMALL!r}, device=device)
setup_trainable(model, ModelConfig(gradient_checkpointing=True, lora={{"rank": 16}}), default="lora")
inputs = transformer_inputs("flux", {SMALL!r}, {ROWS}, {RESOLUTION}, {TEXT}, device=device)
before, high, done = rss(), [0], []
def sample():  # the process's resident memory every millisecond, while the step runs
    while not done:
        high[0] = max(high[0], rss())
        time.sleep(0.001)
watcher = threading.Thread(target=sample)
watcher.start()
peak = peak_bytes(model, inputs, train=True)
done.append(1)
watcher.join()
print(json.dumps({{"peak": peak, "rss": high[0] - before}}))
"""


def run(device: str) -> dict:
    # glibc: allocations above 64 KiB straight from mmap and back on free, so RSS follows live memory
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    done = subprocess.run([sys.executable, "-c", SCRIPT, device], capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def validate() -> dict:
    meta, cpu = run("meta"), run("cpu")
    return {
        "model": f"FLUX width 512, 2 + 4 blocks, {RESOLUTION}² ({(RESOLUTION // 16) ** 2} image "
        f"+ {TEXT} text tokens), {ROWS} rows, bf16, LoRA r16, checkpointing",
        "meta_mb": meta["peak"] / 1e6,
        "cpu_mb": cpu["peak"] / 1e6,
        "rss_mb": cpu["rss"] / 1e6,
    }
