"""The dashboard's HTTP server: stdlib `http.server`, read-only, in a daemon thread.

    GET /                       the page (static/index.html, app.js, app.css)
    GET /static/plotly.min.js   Plotly, served from the installed `plotly` package (no CDN)
    GET /api/status             status.json + elapsed, ETA, s/iteration (data.RunDir.status)
    GET /api/metrics?since=N    metrics.jsonl rows from index N on
    GET /api/samples            sample grids with prompts and per-sample rewards
    GET /samples/<name>.png     one grid from the run dir's samples/

Only GET and HEAD are served; every method that could change something gets 405. Each
response is built from files in the run dir; nothing here writes to it.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from orchestrator.dashboard.data import RunDir

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
PAGES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/app.css": ("app.css", "text/css; charset=utf-8"),
}
# The page loads only what this server serves: the CSP makes the browser refuse anything else.
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


class Response:
    def __init__(self, code: int, body: bytes, content_type: str, cache: str = "no-store"):
        self.code, self.body, self.content_type, self.cache = code, body, content_type, cache


def json_response(data, code: int = 200) -> Response:
    return Response(code, json.dumps(data, allow_nan=False).encode(), "application/json")


def not_found(what: str) -> Response:
    return json_response({"error": f"not found: {what}"}, 404)


def plotly_js() -> Path:
    """plotly.min.js as shipped inside the `plotly` PyPI package (found without importing it)."""
    spec = importlib.util.find_spec("plotly")
    path = Path(spec.origin).parent / "package_data" / "plotly.min.js" if spec and spec.origin else None
    if path is None or not path.is_file():
        raise FileNotFoundError(
            "plotly.min.js not found: the dashboard's charts need the plotly package "
            "(pip install plotly, or pip install -e .)"
        )
    return path


def route(run: RunDir, target: str) -> Response:
    """The response to GET `target` (path and query). Pure reads of the run dir and static files."""
    url = urlsplit(target)
    path, query = url.path, parse_qs(url.query)
    if path in PAGES:
        name, content_type = PAGES[path]
        return Response(200, (STATIC / name).read_bytes(), content_type, cache="no-cache")
    if path == "/static/plotly.min.js":
        return Response(
            200, plotly_js().read_bytes(), "text/javascript; charset=utf-8", cache="max-age=86400"
        )
    if path == "/api/status":
        return json_response(run.status())
    if path == "/api/metrics":
        try:
            since = int(query.get("since", ["0"])[0])
        except ValueError:
            return json_response({"error": "since must be an integer row index"}, 400)
        return json_response(run.metrics_since(since))
    if path == "/api/samples":
        return json_response(run.samples())
    if path.startswith("/samples/"):
        file = run.sample_file(path.removeprefix("/samples/"))
        return (
            Response(200, file.read_bytes(), "image/png", cache="max-age=3600") if file else not_found(path)
        )
    return not_found(path)


class Handler(BaseHTTPRequestHandler):
    """GET / HEAD through `route`; every other method is refused with 405."""

    server: "DashboardHTTPServer"  # HTTP/1.0: one request per connection, so stop() leaves none open

    def do_GET(self):
        self._respond(self._get(), body=True)

    def do_HEAD(self):
        self._respond(self._get(), body=False)

    def refuse(self):
        """The dashboard is read-only: no method that could change the run is served."""
        self._respond(
            json_response({"error": f"{self.command} not allowed: the dashboard is read-only"}, 405),
            body=True,
            extra={"Allow": "GET, HEAD"},
        )

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = refuse

    def _get(self) -> Response:
        try:
            return route(self.server.run, self.path)
        except Exception as err:  # noqa: BLE001 - a bad read answers 500; the server (and the run) go on
            log.warning("dashboard: GET %s failed: %s: %s", self.path, type(err).__name__, err)
            return json_response({"error": f"{type(err).__name__}: {err}"}, 500)

    def _respond(self, response: Response, body: bool, extra: dict | None = None) -> None:
        self.send_response(response.code)
        headers = {
            "Content-Type": response.content_type,
            "Content-Length": str(len(response.body)),
            "Cache-Control": response.cache,
            "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff",
            **(extra or {}),
        }
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if body:
            self.wfile.write(response.body)

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's name; requests go to debug, not stderr
        log.debug("dashboard: " + format, *args)


class DashboardHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], run: RunDir):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.run = run
        super().__init__(address, Handler)


class DashboardServer:
    """The server for one run dir, serving from a daemon thread until stop().

    server = DashboardServer(run_dir, "127.0.0.1", 8266).start()
    print(server.url); ...; server.stop()
    """

    def __init__(self, run_dir: str | Path, host: str = "127.0.0.1", port: int = 8266):
        run = RunDir(run_dir)
        try:
            self.httpd = DashboardHTTPServer((host, port), run)
        except OSError as err:
            if err.errno != errno.EADDRINUSE or port == 0:
                raise
            log.warning("dashboard: port %d is in use; serving on a free port instead", port)
            self.httpd = DashboardHTTPServer((host, 0), run)
        self.host, self.port = host, self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="raygrpo-dashboard", daemon=True)

    @property
    def url(self) -> str:
        host = socket.getfqdn() if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://[{host}]:{self.port}/" if ":" in host else f"http://{host}:{self.port}/"

    def start(self) -> "DashboardServer":
        self.thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread (the `raygrpo dashboard` command) until interrupted."""
        try:
            self.httpd.serve_forever()
        finally:
            self.httpd.server_close()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.httpd.shutdown()
            self.thread.join(timeout=5)
        self.httpd.server_close()
