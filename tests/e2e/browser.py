"""Real headless Chromium for the dashboard tests: the distribution's `chromium` driven by
selenium through its `chromedriver` (same version). Nothing is downloaded; when either is
missing the test fails and names the script that installs both (README command 2 runs it)."""

from __future__ import annotations

import base64
import shutil
import time
from pathlib import Path

import pytest

# Debian: chromium, chromium-driver; Ubuntu: chromium-browser, chromium-chromedriver (snaps)
BROWSERS = ("chromium", "chromium-browser", "/snap/bin/chromium")
DRIVERS = ("chromedriver", "/snap/bin/chromium.chromedriver", "/usr/lib/chromium-browser/chromedriver")


def _find(names) -> Path | None:
    found = next((shutil.which(n) for n in names if shutil.which(n)), None)
    return Path(found) if found else None


FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1500,1000",
]


def open_chromium(profile_dir: Path):
    """A fresh headless Chromium (its own profile in `profile_dir`) that records console messages."""
    browser, driver = _find(BROWSERS), _find(DRIVERS)
    if browser is None or driver is None:
        pytest.fail(
            f"{'chromium' if browser is None else 'chromedriver'} missing: run `bash scripts/system-deps.sh` "
            "(README command 2 does)"
        )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium missing: pip install -e '.[test]'")
    options = webdriver.ChromeOptions()
    options.binary_location = str(browser)
    for flag in [*FLAGS, f"--user-data-dir={profile_dir}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(str(driver)), options=options)


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
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
        },
    )
    return base64.b64decode(shot["data"])
