"""Copy the benchmark tables into README.md, each with the command and machine it came from.

    python bench/readme_tables.py

Replaces everything between `<!-- bench-tables -->` and `<!-- /bench-tables -->` in
README.md with one section per `bench/results/<name>.md` that has a matching `.json`, so
the README shows exactly what the last runs measured (numbers are never typed by hand).
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
START, END = "<!-- bench-tables -->", "<!-- /bench-tables -->"
# (result name, heading, what it answers); the README order
SECTIONS = (
    ("base_model", "Base model", "the shipped tiny model before any RL (held-out, ODE and SDE sampling)"),
    (
        "learning",
        "Learning",
        "does the default run learn without hacking (alignment and fidelity kept), with and without "
        "the alignment reward?",
    ),
    ("algorithms", "Algorithms", "the five presets at the same image budget and the same training time"),
    (
        "learning_text",
        "Learning, text world",
        "does tiny_text.yaml learn the OCR task without hacking (PP-OCRv6 and fidelity held out)?",
    ),
    (
        "algorithms_text",
        "Algorithms, text world",
        "the five presets on the OCR task at the same image budget and the same training time",
    ),
    ("recipe_text", "Text recipe runs", "which settings learn the OCR task without hacking?"),
    (
        "column_snr",
        "Signal per E-GRPO column, text world",
        "what share of a column's update is the OCR reward's slope, against the ceiling of a linear reward?",
    ),
    (
        "column_snr_likelihood",
        "Signal per E-GRPO column, ocr_likelihood",
        "the same with the dense OCR reward",
    ),
    (
        "column_snr_shapes",
        "Signal per E-GRPO column, shapes world",
        "the same for the shapes model and its preference reward, which its runs raise in a few iterations",
    ),
    ("ocr_speed", "OCR reward speed", "ms per image by batch size and ONNX Runtime threads"),
    (
        "reward_replicas",
        "Scorer replicas",
        "an iteration's OCR scoring on R reward actors of one thread against one actor with R threads",
    ),
    (
        "gpu",
        "GPU throughput",
        "FLUX.1-dev-size rollout, LoRA learner step, weight sync and HPSv3-size scorer on one GPU "
        "(docs/gpu.md reads it)",
    ),
    (
        "chunking",
        "Chunk-GRPO chunking",
        "which chunks the chunk_grpo preset defaults to: adaptive, GCPO's list scaled, "
        "or the base model's dynamics profile",
    ),
    ("reference", "Reference code", "our algorithm functions against the five references' own code"),
    ("overhead", "Ray overhead", "the same iterations through the actor system and a single-process loop"),
    (
        "overhead_threads1",
        "Ray overhead at 1 thread per worker",
        "the same at 1 torch thread: most of the 2-thread gap is OMP barriers contending "
        "on 2 fully used cores",
    ),
    ("async", "Async mode", "async ÷ sync wall time against the ideal overlap"),
    ("scaling", "Rollout scaling", "rollout images/s, 2 workers ÷ 1, one core each"),
    (
        "sim_scale",
        "Orchestration at 1…64 workers, simulated",
        "the real driver, pool, scoring and weight sync with waiting workers and FLUX-size payloads "
        "(see below the tables)",
    ),
    ("soak", "Soak", "object store and process memory over 200 iterations"),
    ("oracle", "Oracle", "our HPSv3 / ImageReward against the official packages"),
    ("gpu", "GPU throughput", "FLUX.1-size rollout and learner on a GPU"),
    (
        "memory",
        "GPU memory per actor",
        "does every deploy config fit 80 GB / 141 GB GPUs (real model sizes, meta device)?",
    ),
    ("sync", "Weight sync", "time and extra memory per version, LoRA and full size (CPU + gloo proxy)"),
)


def section(name: str, heading: str, question: str) -> list[str]:
    table, data = RESULTS / f"{name}.md", RESULTS / f"{name}.json"
    if not data.exists():
        return []
    setup = json.loads(data.read_text()).get("setup", {})
    command = setup.get("command") if isinstance(setup, dict) else None
    machine = setup.get("machine") if isinstance(setup, dict) else None
    lines = [f"**{heading}** — {question}" + ("" if question.endswith("?") else ".")]
    if command or machine:
        lines.append(f"`{command or name}`" + (f" on {machine}" if machine else "") + ".")
    lines.append("")
    lines += (
        table.read_text().strip().splitlines() if table.exists() else [f"(see `bench/results/{name}.json`)"]
    )
    return lines + [""]


def render() -> str:
    lines = []
    for name, heading, question in SECTIONS:
        lines += section(name, heading, question)
    return "\n".join(lines).strip() + "\n"


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"README.md needs the markers {START} and {END} around the benchmark tables")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{render()}{END}{tail}")
    print(f"README.md: {sum(1 for s in SECTIONS if (RESULTS / f'{s[0]}.json').exists())} benchmark sections")


if __name__ == "__main__":
    main()
