"""A real headless Chromium for the dashboard's tests: Debian's, driven by Playwright.

Playwright never downloads a browser here: it launches ``/usr/bin/chromium`` by path. When
that is missing and the tests run as root, the session installs Debian's ``chromium`` with
apt-get (its package cache is apt's own, outside the clone); otherwise the tests fail with
what to install. Screenshots go to ``$RECSYS_ARTIFACTS_DIR/browser`` when that is set, else
to the session's pytest temporary folder (the path is printed).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import uvicorn
from playwright.sync_api import Browser, ConsoleMessage, Page, Response, sync_playwright

CHROMIUM_NAMES = ("chromium", "chromium-browser")


def _find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """Debian's chromium, installed with apt-get when missing (as root)."""
    found = _find_chromium()
    if found:
        return found
    if os.geteuid() != 0:
        pytest.fail("the browser tests need Debian's chromium: apt-get install chromium")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"],
        check=True,
        env=env,
        timeout=900,
    )
    found = _find_chromium()
    assert found, "apt-get installed chromium, but no chromium is on PATH"
    return found


@pytest.fixture(scope="package")
def browser(chromium_executable: str) -> Iterator[Browser]:
    # Package scope, not session: while Playwright's sync API is open it holds a running event
    # loop in the main thread, and every later test's asyncio.run() would refuse to start.
    with sync_playwright() as playwright:
        # --no-sandbox: the tests run as root in CI, where Chromium's sandbox refuses to start.
        launched = playwright.chromium.launch(
            executable_path=chromium_executable,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = os.environ.get("RECSYS_ARTIFACTS_DIR")
    folder = Path(root) / "browser" if root else tmp_path_factory.mktemp("browser")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nbrowser screenshots: {folder}")
    return folder


class PageErrors:
    """Console errors and uncaught exceptions of a page, collected as they happen."""

    def __init__(self, page: Page) -> None:
        self.messages: list[str] = []
        self.failed: list[tuple[int, str]] = []
        """``(status, path)`` of every answer of 400 or more (the browser logs each one)."""
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.messages.append(f"pageerror: {error}"))
        page.on("response", self._response)

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.failed.append((response.status, urlsplit(response.url).path))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.messages.append(f"console: {message.text}")


def listed_ids(page: Page) -> list[str]:
    """The item ids of the user's list as the page shows it."""
    ids: list[str] = page.locator("#recs li").evaluate_all(
        "(rows) => rows.map((r) => r.dataset.itemId)"
    )
    return ids


def ml100k_dir() -> Path:
    """The folder holding MovieLens 100K (its titles are what the tests look for)."""
    root = os.environ.get("RECSYS_DATA_DIR")
    if not root or not (Path(root) / "ml-100k" / "u.data").exists():
        pytest.skip("RECSYS_DATA_DIR has no ml-100k/ (the dashboard tests show its titles)")
    return Path(root)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """``app`` served by uvicorn in a thread on a free loopback port; its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, name="ui-test-api", daemon=True)
    thread.start()
    # uvicorn offers no start event: its flag is polled, against a deadline.
    deadline = time.monotonic() + 30
    pause = threading.Event()
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        pause.wait(0.02)
    assert server.started, "the test server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
