"""The dashboard of a live tiny run, in real headless Chromium (Debian's), against the run dir.

The run (local Ray, 2 rollout workers, 2 scorers, 1 learner) trains in a thread; after each
logged iteration it waits until the browser has checked the page, so every check sees a
known iteration while the run is live. Set RAYGRPO_DASHBOARD_SCREENSHOT=docs/dashboard.png
to also write the screenshot the README shows.
"""

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image

from orchestrator.dashboard.data import iteration_seconds
from orchestrator.metrics import read_metrics
from orchestrator.prompts import read_prompts
from orchestrator.run import Run
from reward.worker import build_scorer

from .browser import Console, full_page_png, open_chromium, wait_for
from .conftest import small_config

pytestmark = pytest.mark.slow
ITERATIONS = 4
ROOT = Path(__file__).resolve().parents[2]
GRID_PAD, GRID_SCALE = 2, 3  # rollout/grid.py image_grid(pad=2) at scale 3 (rollout/worker.py _png)

CHART_TRACES = """
const out = {};
for (const div of document.querySelectorAll(".chart"))
  for (const t of (div.data || [])) out[t.meta] = {chart: div.id, x: Array.from(t.x), y: Array.from(t.y)};
return out;"""
WORKER_ROWS = """
return Array.from(document.querySelectorAll("#workers tbody tr")).map(tr => ({
  role: tr.dataset.role, index: Number(tr.dataset.index), pid: Number(tr.dataset.pid),
  cells: Array.from(tr.cells).map(td => td.textContent)}));"""
SAMPLE_VIEW = """
const img = document.getElementById("sample-grid");
return {iteration: img.dataset.iteration, complete: img.complete,
        width: img.naturalWidth, height: img.naturalHeight,
        cells: Array.from(document.querySelectorAll("#sample-rewards td.reward")).map(
          td => [Number(td.dataset.row), Number(td.dataset.col), td.dataset.scorer,
                 Number(td.dataset.value)])};"""
EVAL_IMAGES = """
return Array.from(document.querySelectorAll("#eval-samples img")).map(
  img => ({alt: img.alt, complete: img.complete, width: img.naturalWidth, height: img.naturalHeight}));"""
CARD = "return document.getElementById(arguments[0]).dataset.value;"
WARNING = (
    'const w = document.getElementById("hacking-warning"); return {hidden: w.hidden, text: w.textContent};'
)
HELDOUT = (
    "heldout/preference/mean",
    "heldout/alignment/mean",
    "heldout/fidelity/mean",
    "heldout/train_reward",
)


def read_status(run_dir: Path) -> dict:
    path = run_dir / "status.json"
    return json.loads(path.read_text()) if path.exists() else {}


def check_charts(browser, rows: list[dict], live: bool = True) -> None:
    """Every chart trace named by a metric holds that metric's values from metrics.jsonl."""
    n = len(rows)
    traces = wait_for(
        lambda: (
            (t := browser.execute_script(CHART_TRACES)).get("reward/preference/mean", {}).get("x")
            == list(range(n))
            and t
        ),
        30,
        f"the charts to show {n} iterations",
    )
    required = {
        "reward/preference/mean",
        "reward/alignment/mean",
        "learner/clip_fraction",
        "learner/approx_kl",
        "zero_std_ratio",
        "advantage/abs_mean",
        "learner/ratio_mean",
        "learner/ratio_max",
        "throughput/images_per_s",
        "staleness",
        "time/rollout",
        "time/update",
        "time/sync",
        *HELDOUT,
    }
    assert required <= set(traces), required - set(traces)
    checked = 0
    for meta, trace in traces.items():
        if meta in rows[0]:
            assert trace["x"] == [r["iteration"] for r in rows], meta
            assert trace["y"] == pytest.approx([r[meta] for r in rows], rel=1e-12), meta
            checked += 1
    assert checked >= len(required)
    for scorer in ("preference", "alignment"):  # the spread band is mean ± std
        mean, std = (np.array([r[f"reward/{scorer}/{k}"] for r in rows]) for k in ("mean", "std"))
        assert traces[f"reward/{scorer}/mean+std"]["y"] == pytest.approx(list(mean + std), rel=1e-12)
        assert traces[f"reward/{scorer}/mean-std"]["y"] == pytest.approx(list(mean - std), rel=1e-12)
    assert [r["staleness"] for r in rows] == [0] * n  # synchronous: rollouts use the trained weights
    check_heldout_panel(browser, traces, rows, live)


def check_heldout_panel(browser, traces: dict, rows: list[dict], live: bool) -> None:
    """The held-out panel: the monitor's metrics (every iteration here), judges and trained
    scorers alike, and the warning banner shown exactly when the monitor flagged an iteration."""
    for key in HELDOUT:
        assert traces[key]["chart"] == "chart-heldout" and all(
            isinstance(y, float) for y in traces[key]["y"]
        ), key
    assert all(0 < r["heldout/fidelity/mean"] <= 1 for r in rows)
    assert all(
        r["heldout/train_reward"] == pytest.approx(r["heldout/preference/mean"] + r["heldout/alignment/mean"])
        for r in rows
    )  # both weights 1 in tiny.yaml
    flagged = [r["iteration"] for r in rows if r["heldout/hacking"] == 1]
    assert traces["heldout/hacking:flagged"]["x"] == flagged
    assert browser.find_element("id", "heldout-empty").is_displayed() is False
    if live:  # (the finished run's status.json is given a warning below)
        banner = wait_for(
            lambda: (b := browser.execute_script(WARNING))["hidden"] == (not flagged) and b,
            30,
            "the warning banner to follow the monitor",
        )
        assert ("reward hacking suspected" in banner["text"]) == bool(flagged)


def check_status_cards(browser, rows: list[dict]) -> None:
    it = rows[-1]["iteration"]
    wait_for(
        lambda: browser.execute_script(CARD, "stat-iteration") == str(it),
        30,
        f"the iteration card to say {it}",
    )
    assert float(browser.execute_script(CARD, "stat-images-per-s")) == pytest.approx(
        rows[-1]["throughput/images_per_s"]
    )
    assert int(browser.execute_script(CARD, "stat-policy-version")) == rows[-1]["policy_version"] == it + 1
    recent = rows[-5:]  # ETA: iterations left × mean wall time of the last 5 iterations
    eta = (ITERATIONS - it - 1) * sum(iteration_seconds(r) for r in recent) / len(recent)
    assert float(browser.execute_script(CARD, "stat-eta")) == pytest.approx(eta, rel=1e-9, abs=1e-9)
    assert browser.find_element("id", "stat-phase").text == "log"  # the run waits inside its log phase


def check_workers(browser, run_dir: Path, cfg) -> None:
    """The table lists every actor of status.json, and those are the run's live processes."""

    def table_matches():
        workers = read_status(run_dir)["workers"]
        dom = browser.execute_script(WORKER_ROWS)
        return [(w["role"], w["index"], w["pid"]) for w in workers] == [
            (r["role"], r["index"], r["pid"]) for r in dom
        ] and (workers, dom)

    workers, dom = wait_for(table_matches, 30, "the worker table to match status.json")
    expected = (
        cfg.rollout.num_workers + len(cfg.reward.scorers) + len(cfg.reward.heldout) + cfg.learner.world_size
    )
    assert len(dom) == expected == 6
    assert [r["cells"][0] for r in dom if r["role"] == "judge"] == ["judge · fidelity"]
    assert [r["role"] for r in dom].count("rollout") == 2 and [r["role"] for r in dom].count("learner") == 1
    for w, r in zip(workers, dom):
        assert psutil.pid_exists(w["pid"])
        assert r["cells"][6] == str(w["images"]) and r["cells"][8] == str(w["restarts"]) == "0"
        if w["role"] == "rollout":
            assert r["cells"][5] == str(w["policy_version"])
        if w["images_per_s"] is not None:
            assert float(r["cells"][7]) == pytest.approx(w["images_per_s"], abs=0.006)


def grid_tiles(png: Path, cols: int, rows: int) -> np.ndarray:
    """The uint8 images [rows·cols, 32, 32, 3] a preview grid was drawn from (upscaled tiles, padded)."""
    grid = np.asarray(Image.open(png).convert("RGB"))
    tile = (grid.shape[1] - GRID_PAD) // cols - GRID_PAD
    out = []
    for r in range(rows):
        for c in range(cols):
            y, x = GRID_PAD + r * (tile + GRID_PAD), GRID_PAD + c * (tile + GRID_PAD)
            out.append(grid[y + 1 : y + tile : GRID_SCALE, x + 1 : x + tile : GRID_SCALE])  # tile centres
    return np.stack(out)


def check_samples(browser, run_dir: Path, cfg, it: int) -> None:
    """The latest grid loads, and its reward table is the JSON's, which re-scoring the grid reproduces."""
    view = wait_for(
        lambda: (
            (v := browser.execute_script(SAMPLE_VIEW))["iteration"] == str(it)
            and v["complete"]
            and v["width"] > 0
            and v["cells"]
            and v
        ),
        30,
        f"sample grid {it} to load",
    )
    png = run_dir / "samples" / f"iter_{it:05d}.png"
    assert (view["width"], view["height"]) == Image.open(png).size
    meta = json.loads(png.with_suffix(".json").read_text())
    g = cfg.rollout.group_size
    expected = {
        (ri, col, scorer): v
        for ri, row in enumerate(meta["rows"])
        for scorer, values in row["rewards"].items()
        for col, v in enumerate(values)
    }
    assert {(r, c, s): v for r, c, s, v in view["cells"]} == pytest.approx(expected, rel=1e-12)
    assert len(expected) == len(meta["rows"]) * g * len(cfg.reward.scorers)
    images = grid_tiles(png, g, len(meta["rows"]))
    prompts = [row["prompt"] for row in meta["rows"] for _ in range(g)]
    for scorer in cfg.reward.scorers:
        rescored = build_scorer(scorer).score(images, prompts)
        assert list(rescored) == pytest.approx(
            [v for row in meta["rows"] for v in row["rewards"][scorer.name]], abs=1e-6
        )


def train_in_thread(cfg, run_dir: Path, monkeypatch):
    """Start `train` in a thread whose Run.log, after each iteration, waits for a release."""
    from orchestrator.loop import train

    logged, released, outcome = queue.Queue(), queue.Queue(), {}
    real_log = Run.log

    def log_then_wait(self, iteration, *args, **kwargs):
        row = real_log(self, iteration, *args, **kwargs)
        logged.put(iteration)
        released.get(timeout=900)
        return row

    def target():
        try:
            outcome["result"] = train(cfg, run_dir)
        except BaseException as err:  # noqa: BLE001 - reported by the test
            outcome["error"] = err

    monkeypatch.setattr(Run, "log", log_then_wait)
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, logged, released, outcome


def next_logged(logged: queue.Queue, thread, outcome) -> int:
    while True:
        try:
            return logged.get(timeout=2)
        except queue.Empty:
            if not thread.is_alive():
                pytest.fail(f"the run ended before logging its next iteration: {outcome.get('error')!r}")


def test_dashboard_follows_a_live_run_in_chromium(local_ray, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    eval_prompts = tmp_path / "eval.txt"  # a small before/after evaluation: 2 held-out prompts × 2 samples
    eval_prompts.write_text("\n".join(read_prompts(ROOT / "rollout/tiny/heldout.txt")[:2]) + "\n")
    # 4 groups of 4 over 2 rollout workers: worker 0's preview grid has 2 rows
    cfg = small_config(
        rollout__num_workers=2,
        orchestrator__iterations=ITERATIONS,
        orchestrator__prompts_per_iter=4,
        orchestrator__dashboard_port=0,
        orchestrator__eval_before_after="true",
        orchestrator__eval_prompts=str(eval_prompts),
        orchestrator__eval_samples_per_prompt=2,
        orchestrator__heldout_every=1,
        reward__heldout="[{name: fidelity, kind: fidelity}]",
    )
    thread, logged, released, outcome = train_in_thread(cfg, run_dir, monkeypatch)
    browser = open_chromium(tmp_path / "profile")
    console = Console(browser)
    try:
        url = wait_for(
            lambda: read_status(run_dir).get("dashboard_url"), 300, "status.json to record dashboard_url"
        )
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url)
        browser.get(url)
        browser.execute_script("window.loadedOnce = true;")  # gone if the page ever reloads
        for it in range(ITERATIONS):
            assert next_logged(logged, thread, outcome) == it
            rows = read_metrics(run_dir)
            assert [r["iteration"] for r in rows] == list(range(it + 1))
            check_charts(browser, rows)
            check_status_cards(browser, rows)
            check_workers(browser, run_dir, cfg)
            check_samples(browser, run_dir, cfg, it)
            assert browser.execute_script("return window.loadedOnce === true"), "the page reloaded"
            if it == ITERATIONS - 1:
                wait_for(
                    lambda: (
                        [
                            (i["alt"], i["complete"], i["width"], i["height"])
                            for i in browser.execute_script(EVAL_IMAGES)
                        ]
                        == [("held-out samples before training", True, *eval_grid_size(run_dir, "before"))]
                    ),
                    30,
                    "the eval-before grid to load",
                )
                save_screenshot(full_page_png(browser), tmp_path)
                origin = url.rstrip("/")
                loaded = browser.execute_script(
                    "return performance.getEntriesByType('resource').map(e => e.name)"
                )
                assert loaded and all(name.startswith(origin + "/") for name in loaded), loaded
                assert console.errors() == []
                browser.get("about:blank")  # leave before the run ends and stops its server
            released.put(it)
        thread.join(timeout=300)
        assert not thread.is_alive() and "error" not in outcome, outcome.get("error")
        check_finished_run_served_by_the_cli(browser, run_dir)
        assert console.errors() == []
        check_ray_metrics(run_dir)
    finally:
        for _ in range(ITERATIONS):
            released.put(None)  # never leave the run waiting on a failed test
        browser.quit()
        thread.join(timeout=300)


def eval_grid_size(run_dir: Path, tag: str) -> tuple[int, int]:
    """(width, height) of samples/eval_<tag>.png: one row of 2 tiles (2 prompts × 2 samples over
    2 workers)."""
    size = Image.open(run_dir / "samples" / f"eval_{tag}.png").size
    assert size[1] > 32, f"eval_{tag}.png holds no image row: {size}"
    return size


def save_screenshot(png: bytes, tmp_path: Path) -> None:
    """The test artifact (tmp dir), and docs/ when RAYGRPO_DASHBOARD_SCREENSHOT names a path."""
    (tmp_path / "dashboard.png").write_bytes(png)
    assert Image.open(tmp_path / "dashboard.png").size[1] > 1000  # the whole page, not the window
    target = os.environ.get("RAYGRPO_DASHBOARD_SCREENSHOT")
    if target:
        (ROOT / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "dashboard.png", ROOT / target)


def check_finished_run_served_by_the_cli(browser, run_dir: Path) -> None:
    """`raygrpo dashboard --run-dir` serves the finished run: final state, every iteration, and
    the monitor's warning banner with the text status.json holds (written here when the run
    itself flagged nothing, so the banner is checked either way)."""
    status = read_status(run_dir)
    status.setdefault("hacking_warning", "reward hacking suspected at iteration 3: (written by the test)")
    (run_dir / "status.json").write_text(json.dumps(status))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "dashboard", "--run-dir", str(run_dir), "--port", "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        url = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        assert url, line
        browser.get(url.group(1))
        wait_for(lambda: browser.find_element("id", "state").text == "finished", 30, "the finished state")
        rows = read_metrics(run_dir)
        check_charts(browser, rows, live=False)
        banner = browser.execute_script(WARNING)
        assert not banner["hidden"] and banner["text"] == f"⚠ {status['hacking_warning']}"
        assert browser.execute_script(CARD, "stat-iteration") == str(ITERATIONS - 1)
        assert float(browser.execute_script(CARD, "stat-eta")) == 0.0
        evals = wait_for(
            lambda: (
                (e := browser.execute_script(EVAL_IMAGES))
                and len(e) == 2
                and all(i["complete"] and i["width"] > 0 for i in e)
                and e
            ),
            30,
            "both eval grids to load",
        )
        assert [i["alt"] for i in evals] == [
            "held-out samples before training",
            "held-out samples after training",
        ]
        assert [(i["width"], i["height"]) for i in evals] == [
            eval_grid_size(run_dir, t) for t in ("before", "after")
        ]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def scrape_ray_metrics() -> dict[tuple, float]:
    """{(name, labels that matter): value} of the raygrpo series on this node's Ray metrics endpoint."""
    import ray

    port = ray._private.worker.global_worker.node.metrics_export_port
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for name, labels, value in re.findall(r"^(ray_raygrpo_\w+)\{(.*)\} (\S+)$", text, re.M):
        tags = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        out[(name, tags["run"], tags.get("role"), tags.get("index"))] = float(value)
    return out


def check_ray_metrics(run_dir: Path) -> None:
    """The custom metrics reach Ray's Prometheus endpoint (what the Ray dashboard charts)."""
    rows, workers = read_metrics(run_dir), read_status(run_dir)["workers"]
    run = run_dir.name
    want = {
        ("ray_raygrpo_iteration", run, None, None): ITERATIONS - 1,
        ("ray_raygrpo_images_per_s", run, None, None): rows[-1]["throughput/images_per_s"],
        ("ray_raygrpo_staleness", run, None, None): 0,
    }
    want.update(
        {
            ("ray_raygrpo_actor_images_per_s", run, w["role"], str(w["index"])): w["images_per_s"]
            for w in workers
        }
    )
    assert len(want) == 3 + 6  # 2 rollout, 2 reward, 1 judge, 1 learner
    # Ray exports every ~10 s: wait until the last values arrived
    got = wait_for(
        lambda: (
            (m := scrape_ray_metrics())
            and all(k in m for k in want)
            and all(m[k] == pytest.approx(v, rel=1e-9) for k, v in want.items())
            and m
        ),
        90,
        "the raygrpo series on Ray's metrics endpoint",
        interval=2,
    )
    assert got[("ray_raygrpo_iteration", run, None, None)] == ITERATIONS - 1
