import json
from pathlib import Path

from orchestrator.metrics import METRICS, MetricsWriter, Status, read_metrics, truncate_metrics

ROOT = Path(__file__).resolve().parents[2]


def test_readme_documents_every_metric_as_metrics_py_does():
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in METRICS if f"| `{name}` |" not in readme]
    assert not missing, f"README metric table lacks {missing}"
    cells = readme.replace("\\|", "¦")  # a | inside a markdown cell is written \|
    differ = [
        name
        for name, meaning in METRICS.items()
        if f"| `{name}` | {meaning.replace('|', '¦')} |" not in cells
    ]
    assert not differ, f"README describes {differ} otherwise than orchestrator/metrics.py"


def test_metrics_jsonl_tensorboard_and_truncation(tmp_path):
    writer = MetricsWriter(tmp_path)
    for i in range(4):
        writer.write({"iteration": i, "learner/loss": 0.5 - i, "weights_checksum": "abc"})
    writer.close()
    assert [r["learner/loss"] for r in read_metrics(tmp_path)] == [0.5, -0.5, -1.5, -2.5]
    assert list((tmp_path / "tensorboard").glob("events.*"))
    truncate_metrics(tmp_path, 2)  # a resume from the checkpoint after iteration 1
    assert [r["iteration"] for r in read_metrics(tmp_path)] == [0, 1]


def test_status_is_rewritten_atomically(tmp_path):
    status = Status(tmp_path, iterations=3)
    status.update(state="running", iteration=1, phase="rollout")
    data = json.loads((tmp_path / "status.json").read_text())
    assert data["state"] == "running" and data["iteration"] == 1 and data["iterations"] == 3
    assert not list(tmp_path.glob(".*.tmp"))
    # compact (one line: json's C encoder), since it is rewritten at every phase of every iteration
    assert (tmp_path / "status.json").read_text().count("\n") == 1
