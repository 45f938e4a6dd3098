"""A real headless Chromium driven over the DevTools protocol (no WebDriver), and a real
`kron daemon` for it to look at: the status page's browser tests share these."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from .harness import DEADLINE_S
from .test_metrics import free_port

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
T = TypeVar("T")


def chromium() -> str:
    """The system Chromium; CI must have it (scripts/test.sh installs it), a laptop may not."""
    path = shutil.which("chromium")
    if path:
        return path
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed; scripts/test.sh installs it with apt-get")
    pytest.skip("needs Debian's chromium (apt-get install --no-install-recommends chromium)")


class DevTools:
    """The Chrome DevTools Protocol over one page's websocket: commands, and the events
    that arrive meanwhile, each wait bounded by the test's deadline."""

    def __init__(self, url: str) -> None:
        from websockets.sync.client import connect

        self._stack = contextlib.ExitStack()
        self._ws = self._stack.enter_context(
            connect(url, max_size=None, open_timeout=DEADLINE_S, proxy=None)
        )
        self._ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []
        self.log: list[dict[str, Any]] = []  # Log.entryAdded entries, once Log is enabled
        # The headers each request went out with (cookies included), once Network is enabled.
        self.sent_headers: list[dict[str, Any]] = []

    def close(self) -> None:
        self._stack.close()

    def _receive(self, deadline: float) -> dict[str, Any]:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the browser did not answer in time")
        message: dict[str, Any] = json.loads(self._ws.recv(timeout=left))
        if message.get("method") == "Log.entryAdded":
            self.log.append(message["params"]["entry"])
        elif message.get("method") == "Network.requestWillBeSentExtraInfo":
            self.sent_headers.append(message["params"]["headers"])
        return message

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self._ids)
        self._ws.send(json.dumps({"id": message_id, "method": method, "params": params}))
        deadline = time.monotonic() + DEADLINE_S
        while True:
            message = self._receive(deadline)
            if message.get("id") == message_id:
                assert "error" not in message, (method, message["error"])
                result: dict[str, Any] = message["result"]
                return result
            self.events.append(message)

    def wait_for(self, event: str) -> dict[str, Any]:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            for index, message in enumerate(self.events):
                if message.get("method") == event:
                    del self.events[: index + 1]
                    return message
            self.events.append(self._receive(deadline))

    def load(self, url: str) -> None:
        self.events.clear()
        self.send("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def viewport(self, width: int, *, mobile: bool, height: int = 800) -> None:
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=mobile,
        )

    def node(self, selector: str) -> int:
        root = self.send("DOM.getDocument")["root"]["nodeId"]
        node: int = self.send("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        assert node, f"no element matches {selector}"
        return node

    def centre(self, selector: str) -> tuple[float, float]:
        """Where the element is on the screen, scrolled into view first."""
        node = self.node(selector)
        self.send("DOM.scrollIntoViewIfNeeded", nodeId=node)
        quad = self.send("DOM.getContentQuads", nodeId=node)["quads"][0]
        return sum(quad[0::2]) / 4, sum(quad[1::2]) / 4

    def click(self, selector: str) -> None:
        """Click the element as a person would: a mouse press and release at its centre, then
        wait for the page that follows to load."""
        x, y = self.centre(selector)
        self.events.clear()
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)
        self.wait_for("Page.loadEventFired")

    def type_into(self, selector: str, text: str) -> None:
        """Focus a field and type into it, as a keyboard would."""
        self.send("DOM.focus", nodeId=self.node(selector))
        self.send("Input.insertText", text=text)

    def hover(self, x: float, y: float) -> None:
        self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)

    def location(self) -> str:
        history = self.send("Page.getNavigationHistory")
        return str(history["entries"][history["currentIndex"]]["url"])

    def evaluate(self, expression: str) -> Any:
        """A value computed in the page (DevTools runs it whatever the page's policy says)."""
        found = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in found, found["exceptionDetails"]
        return found["result"].get("value")

    def text(self, selector: str) -> list[str]:
        """The rendered text of every matching element (innerText, as a reader sees it)."""
        values: list[str] = self.evaluate(
            f"[...document.querySelectorAll({json.dumps(selector)})].map(e => e.innerText)"
        )
        return values

    def count(self, selector: str) -> int:
        found: int = self.evaluate(f"document.querySelectorAll({json.dumps(selector)}).length")
        return found

    def screenshot(self, path: Path, *, width: int, mobile: bool) -> None:
        """The whole page at this viewport width, as a PNG."""
        self.viewport(width, mobile=mobile)
        size = self.send("Page.getLayoutMetrics")["cssContentSize"]
        shot = self.send(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": width, "height": size["height"], "scale": 1},
        )
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))


def wait_until(what: str, predicate: Callable[[], T | None]) -> T:
    """Poll `predicate` until it gives something true; fail after the deadline."""
    deadline = time.monotonic() + DEADLINE_S
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return value


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group it leads (Chromium's helpers too), SIGKILL after the deadline."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(DEADLINE_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(DEADLINE_S)


@contextlib.contextmanager
def kron_daemon(jobs_dir: Path, runtime: Path, settings: str = "") -> Iterator[str]:
    """A real `kron daemon` serving the status page on a free port; yields its base URL.

    `settings` is more of kron.toml, after the `metrics` line.
    """
    port = free_port()
    (jobs_dir / "kron.toml").write_text(
        f'metrics = "127.0.0.1:{port}"\n{settings}', encoding="utf-8"
    )
    log = jobs_dir.parent / "daemon.log"
    with open(log, "wb") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kron", "daemon", "--jobs-dir", str(jobs_dir)],
            stdout=subprocess.DEVNULL,
            stderr=handle,
            env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
            start_new_session=True,
        )
    try:
        wait_until("the daemon's listener", lambda: _answers(port) or proc.poll() is not None)
        assert proc.poll() is None, log.read_text()
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)
    assert proc.returncode == 0, log.read_text()


def _answers(port: int) -> bool:
    try:
        with httpx.Client(trust_env=False, timeout=DEADLINE_S) as http:
            http.get(f"http://127.0.0.1:{port}/metrics")
    except httpx.TransportError:
        return False
    return True


@contextlib.contextmanager
def headless_chromium(folder: Path) -> Iterator[DevTools]:
    """A headless Chromium with its DevTools on a port it picks; a page target to drive."""
    executable = chromium()
    profile = folder / "chromium"
    log = folder / "chromium.log"
    with open(log, "wb") as handle:
        proc = subprocess.Popen(
            [
                executable,
                "--headless",
                "--no-sandbox",  # root in a VM: no user namespaces for the sandbox
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=handle,
            start_new_session=True,
        )
    devtools: DevTools | None = None
    try:
        active = profile / "DevToolsActivePort"
        port = int(wait_until("Chromium's DevTools port", lambda: _first_line(active)))
        with httpx.Client(trust_env=False, timeout=DEADLINE_S) as http:
            targets = http.get(f"http://127.0.0.1:{port}/json/list").json()
        (page,) = [t for t in targets if t["type"] == "page"]
        devtools = DevTools(page["webSocketDebuggerUrl"])
        devtools.send("Page.enable")
        devtools.send("Log.enable")  # a page's policy violations are logged here
        yield devtools
    finally:
        if devtools is not None:
            devtools.close()
        stop(proc)


def _first_line(path: Path) -> str | None:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return None
    return lines[0] if len(lines) == 2 else None
