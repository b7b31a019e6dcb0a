"""Real headless Chromium for the dashboard tests: Debian's `chromium` driven by selenium
through Debian's `chromedriver` (same version). Nothing is downloaded; when either is
missing the test fails and names the install command (.ci/run installs both)."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1500,1000"]


def open_chromium(profile_dir: Path):
    """A fresh headless Chromium (its own profile in `profile_dir`) that records console messages."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: apt-get install -y chromium chromium-driver (.ci/run installs them)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium missing: pip install -e '.[test]'")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*FLAGS, f"--user-data-dir={profile_dir}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


class Console:
    """Every console message of the page so far (chromedriver hands each out once)."""

    def __init__(self, driver):
        self.driver, self.messages = driver, []

    def errors(self) -> list[str]:
        self.messages += self.driver.get_log("browser")
        return [m["message"] for m in self.messages if m["level"] == "SEVERE"]


def wait_for(condition, timeout: float, what: str, interval: float = 0.25):
    """Poll `condition()` until it returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def full_page_png(driver) -> bytes:
    """A screenshot of the whole page, not just the window."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
    })
    return base64.b64decode(shot["data"])
