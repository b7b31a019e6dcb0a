"""The orchestrator dashboard (README "Dashboard"): a read-only web page of one run.

    dashboard = start_dashboard(cfg.orchestrator, run.run_dir, run.status)  # while the run is live
    ...
    dashboard.stop()

The page reads only the run dir (server.py, data.py); `raygrpo dashboard --run-dir DIR`
serves a finished run with the same server. A dashboard that fails to start or stop is
logged and the run goes on.
"""

from __future__ import annotations

import logging
from pathlib import Path

from orchestrator.dashboard.server import DashboardServer

log = logging.getLogger(__name__)


class LiveDashboard:
    """Handle on the dashboard of a live run; a no-op when none is served."""

    def __init__(self, server: DashboardServer | None = None):
        self.server = server

    @property
    def url(self) -> str | None:
        return self.server.url if self.server else None

    def stop(self) -> None:
        if self.server is None:
            return
        try:
            self.server.stop()
        except Exception as err:  # noqa: BLE001 - never let the dashboard fail a finished run
            log.warning("dashboard: stopping failed (%s: %s)", type(err).__name__, err)
        self.server = None


def start_dashboard(cfg, run_dir: Path, status) -> LiveDashboard:
    """Serve the run dir's dashboard (`cfg`: OrchestratorConfig), print its URL and record it,
    with the Ray dashboard's, in status.json. Any failure is logged; training goes on."""
    if not cfg.dashboard:
        return LiveDashboard()
    try:
        server = DashboardServer(run_dir, cfg.dashboard_host, cfg.dashboard_port).start()
        print(f"dashboard: {server.url}", flush=True)
        status.update(dashboard_url=server.url, ray_dashboard_url=ray_dashboard_url())
        return LiveDashboard(server)
    except Exception as err:  # noqa: BLE001 - the dashboard is optional, the run is not
        log.warning(
            "dashboard not started (%s: %s); training goes on. Set orchestrator.dashboard_host to a local "
            "address and orchestrator.dashboard_port to a free port (0 picks one), or "
            "orchestrator.dashboard=false",
            type(err).__name__,
            err,
        )
        return LiveDashboard()


def ray_dashboard_url() -> str | None:
    """The Ray dashboard of the cluster this driver joined, or None (no Ray, or started without it)."""
    try:
        import ray

        if not ray.is_initialized():
            return None
        url = ray._private.worker.global_worker.node.address_info.get("webui_url")
    except Exception:  # noqa: BLE001 - a private API: absent or changed means "no link"
        return None
    if not url:
        return None
    return url if url.startswith("http") else f"http://{url}"
