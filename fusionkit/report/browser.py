"""Render a report in headless Chromium and inspect it (standard library only).

Talks the DevTools protocol over a pipe (``--remote-debugging-pipe``): no
port, no network, no client package. Used by the browser test and to refresh
the screenshot in docs/::

    python -m fusionkit.report.browser runs/tumor_origin/report.html docs/report_screenshot.png

:func:`inspect_page` opens a file at a given window size, waits for it to
load, runs :data:`PROBE` in the page (claims panel position, images, elements
wider than the window) and returns its answer with the console errors and a
PNG screenshot of the first screen.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
         "--disable-dev-shm-usage")

PROBE = r"""(async () => {
  const imgs = Array.from(document.images);
  await Promise.all(imgs.map(i => i.decode().catch(() => null)));
  const vw = document.documentElement.clientWidth, vh = window.innerHeight;
  const box = el => { const b = el.getBoundingClientRect(); return {top: b.top, bottom: b.bottom, left: b.left,
                                                                     right: b.right, width: b.width}; };
  const panel = document.getElementById('claims');
  const cards = panel ? Array.from(panel.querySelectorAll('.claim')).map(box) : [];
  const clipped = el => { for (let a = el.parentElement; a && a !== document.documentElement; a = a.parentElement) {
      if (getComputedStyle(a).overflowX !== 'visible') return true; } return false; };
  const wide = [];
  for (const el of document.body.querySelectorAll('*')) {
    const b = el.getBoundingClientRect();
    if ((b.width || b.height) && (b.right > vw + 1 || b.left < -1) && !clipped(el))
      wide.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (el.className ? '.' + el.className : ''));
  }
  return {viewport: {width: vw, height: vh}, scroll_width: document.documentElement.scrollWidth,
          panel: panel ? box(panel) : null, cards: cards,
          images: imgs.map(i => ({alt: i.alt, natural_width: i.naturalWidth, complete: i.complete})),
          wide: wide.slice(0, 20), title: document.title};
})()"""


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary ($FUSIONKIT_CHROMIUM first), or None."""
    env = os.environ.get("FUSIONKIT_CHROMIUM")
    if env and Path(env).exists():
        return env
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class BrowserError(RuntimeError):
    """Chromium could not be started or did not answer."""


class _Pipe:
    """The DevTools protocol over Chromium's fds 3 (its input) and 4 (its output)."""

    def __init__(self, binary: str, profile: str, extra: tuple[str, ...] = ()):
        to_child_r, self._w = os.pipe()
        self._r, from_child_w = os.pipe()

        def child_fds() -> None:  # runs in the child before exec
            a, b = os.dup(to_child_r), os.dup(from_child_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        args = [binary, *FLAGS, *extra, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, pass_fds=(3, 4), preexec_fn=child_fds)
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict[str, Any]:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._next(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 30.0) -> dict[str, Any]:
        for i, ev in enumerate(self.events):
            if ev.get("method") == method:
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            ev = self._next(deadline)
            if ev.get("method") == method:
                return ev
            self.events.append(ev)

    def _next(self, deadline: float) -> dict[str, Any]:
        import select

        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("Chromium did not answer in time")
            ready, _, _ = select.select([self._r], [], [], left)
            if ready:
                chunk = os.read(self._r, 1 << 20)
                if not chunk:
                    err = self.proc.stderr.read().decode(errors="replace")[-2000:] if self.proc.stderr else ""
                    raise BrowserError(f"Chromium exited: {err.strip() or 'no message'}")
                self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (BrowserError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._w, self._r):
            try:
                os.close(fd)
            except OSError:
                pass


def _console_errors(events: list[dict[str, Any]]) -> list[str]:
    out = []
    for ev in events:
        method, p = ev.get("method"), ev.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            out.append("exception: " + str(d.get("exception", {}).get("description") or d.get("text")))
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append("console.error: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"]))
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            out.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}".strip())
    return out


def inspect_page(path: str | Path, width: int = 1366, height: int = 768, binary: str | None = None,
                 timeout: float = 60.0, full_page: bool = False, pdf: bool = False) -> dict[str, Any]:
    """Open ``path`` at ``width`` x ``height``; the probe's answer plus ``console_errors`` and ``screenshot``
    (PNG of the first screen, or of the whole page with ``full_page``); with ``pdf``, also the
    page printed to A4 (``pdf``: bytes)."""
    binary = binary or find_chromium()
    if not binary:
        raise BrowserError("no Chromium found (install the Debian package `chromium`)")
    url = Path(path).resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="fk-chromium-") as profile:
        pipe = _Pipe(binary, profile, (f"--window-size={width},{height}",))
        try:
            target = pipe.send("Target.createTarget", {"url": "about:blank"}, timeout=timeout)["targetId"]
            session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                pipe.send(f"{domain}.enable", session=session)
            pipe.send("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session)
            pipe.send("Page.navigate", {"url": url}, session=session)
            pipe.wait_event("Page.loadEventFired", timeout=timeout)
            probe = pipe.send("Runtime.evaluate", {"expression": PROBE, "returnByValue": True, "awaitPromise": True},
                              session=session, timeout=timeout)
            if "exceptionDetails" in probe:
                raise BrowserError(f"probe failed: {probe['exceptionDetails'].get('text')}")
            shot_params: dict[str, Any] = {"format": "png"}
            if full_page:
                size = pipe.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
                shot_params.update(captureBeyondViewport=True, clip={"x": 0, "y": 0, "width": width, "scale": 1,
                                                                     "height": min(size["height"], 16000)})
            shot = pipe.send("Page.captureScreenshot", shot_params, session=session, timeout=timeout)
            printed = None
            if pdf:
                printed = pipe.send("Page.printToPDF", {"paperWidth": 8.27, "paperHeight": 11.69,
                                                        "printBackground": True}, session=session, timeout=timeout)
            time.sleep(0.2)  # late console messages
            pipe.send("Runtime.evaluate", {"expression": "1"}, session=session)
            result = dict(probe["result"]["value"])
            result["console_errors"] = _console_errors(pipe.events)
            result["screenshot"] = base64.b64decode(shot["data"])
            if printed is not None:
                result["pdf"] = base64.b64decode(printed["data"])
            return result
        finally:
            pipe.close()


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    full = "--full" in args
    args = [a for a in args if a != "--full"]
    if len(args) != 2:
        print("usage: python -m fusionkit.report.browser [--full] REPORT.html SCREENSHOT.png", file=sys.stderr)
        return 2
    try:
        res = inspect_page(args[0], full_page=full)
    except BrowserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    Path(args[1]).write_bytes(res.pop("screenshot"))
    print(json.dumps({k: res[k] for k in ("viewport", "panel", "console_errors", "wide")}, indent=1))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
