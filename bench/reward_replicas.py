"""Scorer replicas: how much faster does an iteration's scoring run on R reward actors of one
thread each than on one actor with R threads? (Real Ray actors, the run's own fan-out,
`Cluster.score`; one run, ratios to one actor with one thread.)

    python bench/reward_replicas.py [--repeats 3] [--cpus 2]

Two workloads, each an iteration's images in the rollout batches a run hands the reward phase:
  scenes  48 512² scenes in 6 batches of 8 (six rollout workers), read through text detection as
          FLUX / SD3.5 images are (reward/ocr.py): a second ONNX thread does not help there
          (bench/results/ocr_speed.md), so replicas are the way to more cores
  text    384 of the text world's 32 × 64 renders in 2 batches of 192 (tiny_text.yaml: 2 workers)
Every setting must return the same rewards as the reference, row for row. Writes
bench/results/reward_replicas.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import ray

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine  # noqa: E402
from ocr_speed import scenes  # noqa: E402

from orchestrator.cluster import Cluster  # noqa: E402
from orchestrator.config import load_config  # noqa: E402
from orchestrator.rollouts import RolloutBatch  # noqa: E402
from rollout.tiny.text_world import parse_prompt, prompts, render_prompts  # noqa: E402

SETTINGS = [(1, 1), (1, 2), (2, 1)]  # (replicas, ONNX threads each); the first is the reference


class Scoring(Cluster):
    """Only the reward phase of a Cluster: `replicas` actors of one OCR scorer."""

    def __init__(self, scorer: dict):
        self.cfg = load_config("deploy/configs/tiny_text.yaml", [f"reward.scorers=[{json.dumps(scorer)}]"])
        spec = self.cfg.reward.scorers[0]
        self.reward_actors = {spec.name: self._reward_replicas(spec)}
        self.judge_actors, self.restarts, self.recovered = {}, {spec.name: [0] * spec.replicas}, 0
        self.rollouts = self.control = self.pg = None
        self.learners = []
        ray.get([a.info.remote() for a in self.reward_actors[spec.name]])

    def warm_up(self, images: np.ndarray, texts: list[str]) -> None:  # loads the detector in each
        actors = self.reward_actors[self.cfg.reward.scorers[0].name]
        ray.get([a.score.remote(images[:1], texts[:1]) for a in actors])


def workload(name: str, rng: np.random.Generator) -> tuple[np.ndarray, list[str], int]:
    """(uint8 images, prompts, rollout batches)."""
    texts = prompts("heldout")
    if name == "scenes":
        chosen = [texts[i % len(texts)] for i in range(48)]
        return scenes([parse_prompt(t) for t in chosen], rng), chosen, 6
    chosen = [texts[i % len(texts)] for i in range(384)]
    return render_prompts(chosen, rng), chosen, 2


def measure(
    name: str, repeats: int, rng: np.random.Generator, kind: str = "ocr", batch: int = 4
) -> list[dict]:
    images, texts, n_batches = workload(name, rng)
    size = len(images) // n_batches
    batches = [
        RolloutBatch(
            ray.put(images[i * size : (i + 1) * size]), None, tuple(texts[i * size : (i + 1) * size])
        )
        for i in range(n_batches)
    ]
    rows, reference = [], None
    for replicas, threads in SETTINGS:
        scoring = Scoring(
            {"name": "scorer", "kind": kind, "batch_size": batch, "threads": threads, "replicas": replicas}
        )
        scoring.warm_up(images, texts)
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            rewards = scoring.score(batches)["scorer"]
            seconds.append(time.perf_counter() - start)
        scoring.shutdown()
        reference = rewards if reference is None else reference
        s = statistics.median(seconds)
        rows.append(
            {
                "workload": name,
                "scorer": f"{kind}, batch_size {batch}",
                "images": len(images),
                "replicas": replicas,
                "threads": threads,
                "seconds": round(s, 3),
                "images_per_s": round(len(images) / s, 1),
                "same_rewards": bool(np.array_equal(rewards, reference)),
                "mean_reward": round(float(rewards.mean()), 4),
            }
        )
    base = rows[0]["seconds"]
    for row in rows:
        row["speedup"] = round(base / row["seconds"], 2)
    return rows


def markdown(result: dict) -> str:
    lines = [
        "| workload | scorer | images | replicas × threads | s per iteration | images/s | speed-up "
        "| same rewards |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['workload']} | {r['scorer']} | {r['images']} | {r['replicas']} × {r['threads']} | "
            f"{r['seconds']} | "
            f"{r['images_per_s']} | {r['speedup']}× | {'yes' if r['same_rewards'] else 'NO'} |"
        )
    setup = result["setup"]
    lines += ["", f"Command: `{setup['command']}`. Machine: {setup['machine']}.", "", setup["note"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--out", type=Path, default=RESULTS / "reward_replicas")
    args = p.parse_args()
    ray.init(num_cpus=args.cpus, include_dashboard=False)
    rng = np.random.default_rng(0)
    rows = measure("scenes", args.repeats, rng) + measure("text", args.repeats, rng)
    rows += measure("text", args.repeats, rng, kind="ocr_heldout", batch=1)  # tiny_text.yaml's judge
    ray.shutdown()
    result = {
        "setup": {
            "command": "python bench/reward_replicas.py " + " ".join(sys.argv[1:]),
            "machine": machine(),
            "note": "One OCR scorer (ocr: PP-OCRv4; ocr_heldout: PP-OCRv6) through the run's own reward "
            "fan-out (orchestrator/cluster.py Cluster.score: each replica scores an even share of the "
            "rows); the median of the repeats; speed-up against 1 actor × 1 ONNX thread of the same "
            "scorer; same rewards: row for row equal to that reference's.",
        },
        "rows": rows,
    }
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
