"""A real browser for the tests that check what a person sees: Debian's ``chromium`` driven by
Selenium through ``chromedriver`` (packages ``chromium`` and ``chromium-driver``; ``make
browser`` installs them as root), headless. Tests skip with that hint when either is absent.
Also: Evidently's UI (``evidently ui``) on a workspace, on a free port, for the time of a test."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

INSTALL_HINT = "needs Debian's chromium and chromium-driver (make browser, or apt-get install chromium chromium-driver)"


def _found(*names: str) -> str | None:
    return next((p for p in (shutil.which(n) for n in names) if p), None)


@contextlib.contextmanager
def chromium(width: int = 1400, height: int = 2200) -> Iterator[object]:
    """A headless Chromium WebDriver (the test skips when Chromium or its driver is missing)."""
    browser, driver_bin = _found("chromium", "chromium-browser"), _found("chromedriver")
    if browser is None or driver_bin is None:
        pytest.skip(INSTALL_HINT)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_bin), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def evidently_ui(workspace: Path, timeout: float = 60) -> Iterator[str]:
    """``evidently ui`` serving ``workspace``; yields its base URL, stops it afterwards."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([str(Path(sys.executable).parent / "evidently"), "ui", "--workspace", str(workspace),
                             "--host", "127.0.0.1", "--port", str(port)],
                            env={**os.environ, "DO_NOT_TRACK": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/projects", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    raise RuntimeError(f"evidently ui did not start: {proc.communicate()[0][-2000:]}") from None
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
