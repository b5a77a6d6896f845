"""Open a report in Debian's headless Chromium: a full-page PNG and the page's console errors.

Chromium is driven over the DevTools protocol on `--remote-debugging-pipe` (NUL-separated JSON
on file descriptors 3 and 4), which reports console calls with their level, uncaught
exceptions and browser log entries (failed loads, CSP violations) as separate events; the
`--enable-logging=stderr` text logs every console call at the same level.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from harness.errors import CapabilityError, HarnessError

CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
)
WIDTH = 1280
HEIGHT = 900  # the first screen: what a person sees before scrolling
MAX_HEIGHT = 16384


def find_chromium() -> str:
    """The chromium binary: $HARNESS_CHROMIUM, /usr/bin/chromium, else `chromium` on PATH."""
    for candidate in (os.environ.get("HARNESS_CHROMIUM"), CHROMIUM, shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise CapabilityError(
        "no chromium to render the report with: install Debian's `chromium` package "
        "(apt-get install -y chromium) or set HARNESS_CHROMIUM to the binary"
    )


class _Pipe:
    """One DevTools connection: numbered commands, events collected as they arrive."""

    def __init__(self, to_browser: int, from_browser: int, deadline: float) -> None:
        self.to, self.frm, self.deadline = to_browser, from_browser, deadline
        self.buf = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: str = "") -> int:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            data = data[os.write(self.to, data) :]
        return self.next_id

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self.buf:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer over the DevTools pipe in time")
            ready, _, _ = select.select([self.frm], [], [], left)
            if ready:
                chunk = os.read(self.frm, 1 << 20)
                if not chunk:
                    raise EOFError("chromium closed the DevTools pipe (it exited)")
                self.buf += chunk
        raw, self.buf = self.buf.split(b"\0", 1)
        msg: dict[str, Any] = json.loads(raw)
        return msg

    def call(self, method: str, params: dict[str, Any] | None = None, session: str = "") -> Any:
        want = self.send(method, params, session)
        while True:
            msg = self._read()
            if msg.get("id") == want:
                if "error" in msg:
                    raise HarnessError(f"chromium: {method} failed: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_event(self, method: str) -> dict[str, Any]:
        for i, e in enumerate(self.events):
            if e["method"] == method:
                return self.events.pop(i)
        while True:
            msg = self._read()
            if msg.get("method") == method:
                return msg
            if "method" in msg:
                self.events.append(msg)


def console_errors(events: list[dict[str, Any]]) -> list[str]:
    """Console errors, uncaught exceptions and error-level browser log entries, as text."""
    out = []
    for e in events:
        p = e.get("params", {})
        if e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            args = " ".join(
                str(a.get("value", a.get("description", ""))) for a in p.get("args", [])
            )
            out.append(f"console.{p['type']}: {args}")
        elif e["method"] == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            out.append(
                "Uncaught " + str(d.get("exception", {}).get("description") or d.get("text"))
            )
        elif e["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            entry = p["entry"]
            where = f" ({entry['url']})" if entry.get("url") else ""
            out.append(f"{entry.get('source', 'log')}: {entry.get('text', '')}{where}")
    return out


def _high_fd(fd: int) -> int:
    """A copy of `fd` numbered >= 10, so dup2 onto 3 and 4 in the child cannot clobber it."""
    new = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return new


def _on_fds_3_and_4(argv: list[str], cmd_r: int, resp_w: int) -> list[str]:
    """`argv` run with `cmd_r` as fd 3 and `resp_w` as fd 4 (what --remote-debugging-pipe
    reads and writes), set up by bash's redirections: no Python code runs between fork and exec,
    which is unsafe while the harness's sampler and log threads run."""
    return ["/bin/bash", "-c", f'exec "$@" 3<&{cmd_r} 4>&{resp_w}', "chromium", *argv]


@contextlib.contextmanager
def _page(html: Path, timeout_s: float) -> Iterator[tuple[_Pipe, str]]:
    """Chromium with `html` loaded in a 1280x900 viewport: the DevTools pipe and the page's
    session. A failure to start, load or answer is a HarnessError with the browser's log tail."""
    binary = find_chromium()
    html = Path(html).resolve()
    if not html.is_file():
        raise HarnessError(f"{html}: no such report to render")
    cmd_r, cmd_w = (_high_fd(fd) for fd in os.pipe())
    resp_r, resp_w = (_high_fd(fd) for fd in os.pipe())
    with tempfile.TemporaryDirectory(prefix="harness-chromium-") as profile:
        log_path = Path(profile) / "chromium.log"
        argv = [
            binary,
            *FLAGS,
            f"--user-data-dir={profile}/data",
            f"--window-size={WIDTH},{HEIGHT}",
            "about:blank",
        ]
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                _on_fds_3_and_4(argv, cmd_r, resp_w),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                pass_fds=(cmd_r, resp_w),
                start_new_session=True,
            )
        os.close(cmd_r)
        os.close(resp_w)
        pipe = _Pipe(cmd_w, resp_r, time.monotonic() + timeout_s)
        try:
            yield pipe, _load(pipe, html)
        except (TimeoutError, EOFError, HarnessError, ValueError) as exc:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
            raise HarnessError(f"chromium could not render {html}: {exc}\n{tail}") from None
        finally:
            _stop(proc, pipe)
            os.close(cmd_w)
            os.close(resp_r)


def screenshot(html: Path, png: Path, *, timeout_s: float = 60.0) -> list[str]:
    """Render `html` at 1280 px wide, write a full-page PNG to `png`; return console errors."""
    with _page(html, timeout_s) as (pipe, session):
        image = _full_page(pipe, session)
    png.parent.mkdir(parents=True, exist_ok=True)
    png.write_bytes(image)
    return console_errors(pipe.events)


# For each selector, every matching element's box (page coordinates, CSS px) and its text as
# rendered; run in the page by DevTools, so the report's CSP (no scripts) does not apply.
_BOXES_JS = """
(selectors) => Object.fromEntries(selectors.map((sel) => [sel,
  Array.from(document.querySelectorAll(sel)).map((el) => {
    const r = el.getBoundingClientRect();
    return {top: r.top + window.scrollY, bottom: r.bottom + window.scrollY,
            left: r.left, right: r.right, text: el.innerText};
  })]))
"""


def boxes(
    html: Path, selectors: Sequence[str], *, timeout_s: float = 60.0
) -> dict[str, list[dict[str, Any]]]:
    """Where `html`, laid out at 1280x900 as a person first sees it, puts the elements of each
    CSS selector: {selector: [{top, bottom, left, right, text}, ...]}, in page pixels. An
    element whose top is below HEIGHT is off the first screen."""
    with _page(html, timeout_s) as (pipe, session):
        return _measure(pipe, session, html, selectors)


def check(
    html: Path, png: Path, selectors: Sequence[str], *, timeout_s: float = 60.0
) -> tuple[list[str], dict[str, list[dict[str, Any]]]]:
    """One browser start for the whole check of a report: the full-page PNG written to `png`,
    and (console errors, `boxes` of each selector)."""
    with _page(html, timeout_s) as (pipe, session):
        found = _measure(pipe, session, html, selectors)
        image = _full_page(pipe, session)
    png.parent.mkdir(parents=True, exist_ok=True)
    png.write_bytes(image)
    return console_errors(pipe.events), found


def _measure(
    pipe: _Pipe, session: str, html: Path, selectors: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    expression = f"({_BOXES_JS.strip()})({json.dumps(list(selectors))})"
    result = pipe.call(
        "Runtime.evaluate", {"expression": expression, "returnByValue": True}, session
    )
    if "exceptionDetails" in result:
        raise HarnessError(f"chromium could not measure {html}: {result['exceptionDetails']}")
    value: dict[str, list[dict[str, Any]]] = result["result"]["value"]
    return value


def _load(pipe: _Pipe, html: Path) -> str:
    target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Runtime", "Log", "Page"):
        pipe.call(f"{domain}.enable", session=session)
    metrics = {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False}
    pipe.call("Emulation.setDeviceMetricsOverride", metrics, session)
    pipe.call("Page.navigate", {"url": html.as_uri()}, session)
    pipe.wait_event("Page.loadEventFired")
    return str(session)


def _full_page(pipe: _Pipe, session: str) -> bytes:
    size = pipe.call("Page.getLayoutMetrics", session=session)["cssContentSize"]
    height = min(MAX_HEIGHT, int(size["height"]) + 1)
    clip = {"x": 0, "y": 0, "width": WIDTH, "height": height, "scale": 1}
    shot = pipe.call(
        "Page.captureScreenshot",
        {"format": "png", "clip": clip, "captureBeyondViewport": True},
        session,
    )
    # Events that arrived while the screenshot was taken are already in pipe.events.
    return base64.b64decode(shot["data"])


def _stop(proc: subprocess.Popen[bytes], pipe: _Pipe) -> None:
    with contextlib.suppress(OSError):
        pipe.send("Browser.close")
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=10)
