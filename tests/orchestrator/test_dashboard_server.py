"""The dashboard server against a synthetic run dir: JSON endpoints, static files, read-only,
loopback by default, failures that never reach the run."""

import hashlib
import json
import logging
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from orchestrator.__main__ import main, parser
from orchestrator.config import OrchestratorConfig
from orchestrator.dashboard import start_dashboard
from orchestrator.dashboard.data import RunDir
from orchestrator.dashboard.server import DashboardServer, plotly_js
from orchestrator.metrics import Status

PNG = bytes.fromhex("89504e470d0a1a0a") + b"not really a png, served as bytes"


def metrics_row(i: int, phase_seconds: float, **extra) -> dict:
    return {
        "iteration": i,
        "policy_version": i + 1,
        "reward/pref/mean": 0.5 + i / 10,
        "reward/pref/std": 0.1,
        "learner/clip_fraction": 0.25 * i,
        "time/rollout": phase_seconds / 2,
        "time/update": phase_seconds / 2,
        **extra,
    }


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """A run of 10 iterations, 3 logged (wall 2, 3, 4 s), a torn 4th line, grids 0 and 2, eval before."""
    run = tmp_path / "run"
    (run / "samples").mkdir(parents=True)
    status = {
        "state": "running",
        "iteration": 2,
        "iterations": 10,
        "phase": "rollout",
        "started": 1000.0,
        "updated": 1020.0,
        "workers": [{"role": "rollout", "index": 0, "pid": 11, "images_per_s": 3.5}],
        "last_metrics": {"big": "dropped"},
        "run_dir": str(run),
    }
    (run / "status.json").write_text(json.dumps(status))
    rows = [
        metrics_row(0, 2.0),
        metrics_row(1, 3.0, **{"learner/grad_norm": float("nan")}),
        metrics_row(2, 4.0),
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"iteration": 3, "rew')
    for i in (0, 2):
        (run / "samples" / f"iter_{i:05d}.png").write_bytes(PNG + bytes([i]))
        meta = {
            "iteration": i,
            "policy_version": i,
            "group_size": 2,
            "rows": [{"prompt": "a red circle", "group": 0, "rewards": {"pref": [0.25, 0.75]}}],
        }
        (run / "samples" / f"iter_{i:05d}.json").write_text(json.dumps(meta))
    (run / "samples" / "eval_before.png").write_bytes(PNG)
    (run / "config.yaml").write_text("secret: not served\n")
    return run


@pytest.fixture
def server(run_dir):
    srv = DashboardServer(run_dir, "127.0.0.1", 0).start()
    yield srv
    srv.stop()


def fetch(url: str, method: str = "GET"):
    """(status code, headers, body) of one request; HTTP errors are answers, not exceptions."""
    req = urllib.request.Request(
        url, method=method, data=b"{}" if method in ("POST", "PUT", "PATCH") else None
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def tree_digest(path: Path) -> dict:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def test_status_derives_elapsed_eta_and_seconds_per_iteration(run_dir, server):
    status = RunDir(run_dir).status(now=1030.0)
    # 3 of 10 iterations done; wall 2, 3, 4 s -> 3 s per iteration; 7 left -> ETA 21 s.
    assert status["iteration_s"] == pytest.approx(3.0)
    assert status["eta_s"] == pytest.approx(21.0)
    assert status["elapsed_s"] == pytest.approx(30.0)  # running: now - started
    assert "last_metrics" not in status
    assert status["tensorboard_command"] == f"tensorboard --logdir {run_dir.resolve() / 'tensorboard'}"

    code, headers, body = fetch(server.url + "api/status")
    assert code == 200 and headers["Content-Type"] == "application/json"
    served = json.loads(body)
    assert served["eta_s"] == pytest.approx(21.0) and served["workers"][0]["images_per_s"] == 3.5

    status_json = json.loads((run_dir / "status.json").read_text())
    (run_dir / "status.json").write_text(json.dumps({**status_json, "state": "finished"}))
    ended = RunDir(run_dir).status(now=5000.0)
    assert ended["eta_s"] == 0.0 and ended["elapsed_s"] == pytest.approx(20.0)  # frozen at `updated`


def test_metrics_since_a_row_index_and_a_torn_last_line(run_dir, server):
    code, _, body = fetch(server.url + "api/metrics?since=1")
    data = json.loads(body)  # strict JSON: the NaN grad norm must have become null
    assert code == 200 and data["start"] == 1 and data["total"] == 3
    assert [r["iteration"] for r in data["rows"]] == [1, 2]
    assert data["rows"][0]["learner/grad_norm"] is None
    assert data["rows"][1]["reward/pref/mean"] == pytest.approx(0.7)
    # the torn line completes: the next read has it
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('ard": 1}\n')
    data = json.loads(fetch(server.url + "api/metrics?since=3")[2])
    assert data["start"] == 3 and data["total"] == 4 and data["rows"] == [{"iteration": 3, "reward": 1}]
    # a client ahead of the file (a resumed run dropped rows) gets every row again
    data = json.loads(fetch(server.url + "api/metrics?since=9")[2])
    assert data["start"] == 0 and len(data["rows"]) == 4
    assert fetch(server.url + "api/metrics?since=x")[0] == 400


def test_samples_list_grids_newest_first_with_their_rewards(run_dir, server):
    data = json.loads(fetch(server.url + "api/samples")[2])
    assert [s["iteration"] for s in data["iterations"]] == [2, 0]
    assert data["iterations"][0]["image"] == "iter_00002.png"
    assert data["iterations"][0]["meta"]["rows"][0]["rewards"] == {"pref": [0.25, 0.75]}
    assert data["eval"] == [{"tag": "before", "image": "eval_before.png"}]
    code, headers, body = fetch(server.url + "samples/iter_00002.png")
    assert code == 200 and headers["Content-Type"] == "image/png" and body == PNG + bytes([2])
    # only grid names are served: nothing else in (or outside) the run dir
    for path in (
        "samples/../config.yaml",
        "samples/%2e%2e/config.yaml",
        "samples/config.yaml",
        "samples/iter_00001.png",
        "config.yaml",
        "status.json",
        "static/../server.py",
    ):
        assert fetch(server.url + path)[0] == 404, path


def test_page_and_plotly_come_from_this_server(server):
    code, headers, html = fetch(server.url)
    assert code == 200 and headers["Content-Type"].startswith("text/html")
    assert b'<script src="/static/plotly.min.js"></script>' in html
    assert "connect-src 'self'" in headers["Content-Security-Policy"]
    code, _, js = fetch(server.url + "static/plotly.min.js")
    assert code == 200 and js == plotly_js().read_bytes() and len(js) > 1_000_000
    for name in ("app.js", "app.css"):
        assert fetch(server.url + f"static/{name}")[0] == 200


def test_only_get_and_head_are_served(run_dir, server):
    before = tree_digest(run_dir)
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        for path in ("", "api/status", "api/metrics", "samples/iter_00000.png"):
            code, headers, _ = fetch(server.url + path, method)
            assert code == 405, (method, path)
            assert headers["Allow"] == "GET, HEAD"
    code, headers, body = fetch(server.url + "api/status", "HEAD")
    assert code == 200 and body == b"" and int(headers["Content-Length"]) > 0
    assert tree_digest(run_dir) == before


def non_loopback_ipv4() -> str | None:
    """This machine's outward IPv4 address (a UDP connect sends nothing), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            ip = s.getsockname()[0]
        except OSError:
            return None
    return None if ip.startswith("127.") else ip


def test_binds_loopback_by_default_and_records_its_url(run_dir, capsys):
    cfg = OrchestratorConfig()
    assert cfg.dashboard and cfg.dashboard_host == "127.0.0.1"
    assert parser().parse_args(["dashboard", "--run-dir", "x"]).host == "127.0.0.1"
    status = Status(run_dir, iterations=10)
    dashboard = start_dashboard(cfg.model_copy(update={"dashboard_port": 0}), run_dir, status)
    try:
        host, port = dashboard.server.httpd.server_address
        assert host == "127.0.0.1"
        assert f"dashboard: http://127.0.0.1:{port}/" in capsys.readouterr().out
        recorded = json.loads((run_dir / "status.json").read_text())
        assert recorded["dashboard_url"] == dashboard.url == f"http://127.0.0.1:{port}/"
        assert fetch(recorded["dashboard_url"] + "api/status")[0] == 200
        outward = non_loopback_ipv4()
        if outward:  # another address of this machine does not reach it
            with pytest.raises(OSError):
                socket.create_connection((outward, port), timeout=2).close()
    finally:
        dashboard.stop()
    with pytest.raises(OSError):  # stopped: the port no longer answers
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_a_busy_port_falls_back_to_a_free_one(run_dir):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        srv = DashboardServer(run_dir, "127.0.0.1", taken).start()
        try:
            assert srv.port not in (taken, 0)
            assert fetch(srv.url + "api/status")[0] == 200
        finally:
            srv.stop()


def test_a_dashboard_that_cannot_start_is_logged_and_the_run_goes_on(run_dir, caplog):
    status = Status(run_dir, iterations=10)
    cfg = OrchestratorConfig(dashboard_host="203.0.113.7", dashboard_port=0)  # an address this machine lacks
    with caplog.at_level(logging.WARNING, logger="orchestrator.dashboard"):
        dashboard = start_dashboard(cfg, run_dir, status)
    assert dashboard.url is None
    assert "dashboard not started" in caplog.text and "orchestrator.dashboard_host" in caplog.text
    dashboard.stop()  # a no-op, not an error
    assert "dashboard_url" not in json.loads((run_dir / "status.json").read_text())
    off = start_dashboard(OrchestratorConfig(dashboard=False), run_dir, status)
    assert off.url is None


def test_cli_names_the_fix_for_a_dir_that_is_not_a_run(tmp_path, capsys):
    assert main(["dashboard", "--run-dir", str(tmp_path / "nope")]) == 2
    assert "no status.json or metrics.jsonl" in capsys.readouterr().err
