"""Headless Chromium for the browser tests: Debian's /usr/bin/chromium driven by Playwright (never Playwright's own
browser download). scripts/bootstrap.sh installs the package."""
from __future__ import annotations

import os
import shutil
from contextlib import contextmanager

CHROMIUM = os.environ.get("SONICFLOW_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--autoplay-policy=no-user-gesture-required"]


@contextmanager
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def screenshot_dir(tmp_path) -> str:
    """Where screenshots go: SONICFLOW_SCREENSHOTS (to look at them) or the test's tmp folder."""
    d = os.environ.get("SONICFLOW_SCREENSHOTS") or str(tmp_path)
    os.makedirs(d, exist_ok=True)
    return d
