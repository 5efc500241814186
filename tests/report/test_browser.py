"""Open ``report.html`` in headless Chromium (Debian's package) over the DevTools protocol
(``--remote-debugging-pipe``): every image loads, no request leaves the machine, no console
error appears; a screenshot is kept in ``test-artifacts/``. Skipped when chromium is absent."""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

# Debian's /usr/bin/chromium is a shell launcher; the browser binary it runs is used directly
# so that the DevTools pipe (fds 3 and 4) reaches it untouched by the launcher's scripts.
_REAL = Path("/usr/lib/chromium/chromium")
CHROMIUM = str(_REAL) if _REAL.exists() else (shutil.which("chromium") or shutil.which("chromium-browser"))
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = [pytest.mark.browser, pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")]


class Chromium:
    """A headless Chromium driven through the DevTools pipe (fd 3: commands in, fd 4: replies out)."""

    def __init__(self, user_data_dir: Path) -> None:
        cmd_r, self._cmd_w = os.pipe()
        self._res_r, res_w = os.pipe()

        def child() -> None:
            # via fresh copies, so that dup2 never maps an fd onto itself (which would keep
            # its close-on-exec flag)
            a, b = os.dup(cmd_r), os.dup(res_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
                "--disable-extensions", "--mute-audio", "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={user_data_dir}", "--remote-debugging-pipe",
                "about:blank"]
        self.proc = subprocess.Popen(args, preexec_fn=child, close_fds=False, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        os.close(cmd_r)
        os.close(res_w)
        self._id = 0
        self._buf = b""
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        want = self._id
        deadline = time.monotonic() + timeout
        while True:
            m = self._read(deadline)
            if m.get("id") == want:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        for e in self.events:
            if e.get("method") == method:
                return e
        while True:
            m = self._read(deadline)
            self.events.append(m)
            if m.get("method") == method:
                return m

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no reply from chromium")
            r, _, _ = select.select([self._res_r], [], [], left)
            if r:
                chunk = os.read(self._res_r, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._cmd_w)
        os.close(self._res_r)


LOCAL_SCHEMES = ("file:", "data:", "about:", "blob:", "chrome:", "devtools:")


def open_in_chromium(html: Path, screenshot: Path, tmp: Path) -> dict:
    """Load ``html``; return the requests made, console errors, image states and page text."""
    b = Chromium(tmp / "profile")
    try:
        target = b.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = b.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Network", "Runtime", "Log"):
            b.send(f"{domain}.enable", session=session)
        b.send("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 1600, "deviceScaleFactor": 1,
                                                      "mobile": False}, session=session)
        b.send("Page.navigate", {"url": html.resolve().as_uri()}, session=session)
        b.wait_event("Page.loadEventFired", timeout=120)
        images = b.send("Runtime.evaluate", {"expression": "JSON.stringify(Array.from(document.images).map("
                                             "i => [i.complete, i.naturalWidth, i.naturalHeight, i.src.slice(0, 22)]))",
                                             "returnByValue": True}, session=session)["result"]["value"]
        text = b.send("Runtime.evaluate", {"expression": "document.body.innerText", "returnByValue": True},
                      session=session)["result"]["value"]
        shot = b.send("Page.captureScreenshot", {"format": "png"}, session=session, timeout=120)["data"]
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.write_bytes(base64.b64decode(shot))
        time.sleep(0.5)
        b.send("Runtime.evaluate", {"expression": "1"}, session=session)  # flush pending events
        ev = b.events
        requests = [e["params"]["request"]["url"] for e in ev if e.get("method") == "Network.requestWillBeSent"]
        errors = [e["params"] for e in ev if e.get("method") == "Runtime.exceptionThrown"]
        errors += [e["params"] for e in ev if e.get("method") == "Runtime.consoleAPICalled"
                   and e["params"].get("type") in ("error", "assert")]
        errors += [e["params"]["entry"] for e in ev if e.get("method") == "Log.entryAdded"
                   and e["params"]["entry"].get("level") == "error"]
        failed = [e["params"] for e in ev if e.get("method") == "Network.loadingFailed"]
        return {"images": json.loads(images), "requests": requests, "errors": errors, "failed": failed, "text": text}
    finally:
        b.close()


@pytest.mark.parametrize("lang", ["en", "fi"])
def test_report_html_in_headless_chromium(lang, tmp_path_factory, tmp_path):
    from test_report_e2e import SECTION_TITLES_EN, SECTION_TITLES_FI, shared_report

    out = shared_report(tmp_path_factory, lang)
    shot = ARTIFACTS / f"report_{lang}.png"
    res = open_in_chromium(out / "report.html", shot, tmp_path)
    n_figs = len(list((out / "figures").glob("*.png")))
    assert len(res["images"]) == n_figs >= 8
    for complete, w, h, src in res["images"]:
        assert complete and w > 0 and h > 0, src
        assert src.startswith("data:image/png")
    remote = [u for u in res["requests"] if not u.startswith(LOCAL_SCHEMES)]
    assert remote == [], f"requests left the machine: {remote}"
    assert res["failed"] == []
    assert res["errors"] == [], res["errors"]
    titles = SECTION_TITLES_EN if lang == "en" else SECTION_TITLES_FI
    for t in titles:
        assert t in res["text"], t
    assert shot.exists() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_the_probe_sees_remote_requests_and_broken_images(tmp_path):
    """The checks above can fail: a page with a remote image and a script error is caught."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><body><img src="http://example.invalid/x.png">'
                    '<img src="data:image/png;base64,AAAA"><script>console.error("boom")</script></body></html>')
    res = open_in_chromium(page, tmp_path / "bad.png", tmp_path)
    assert any(u.startswith("http://example.invalid") for u in res["requests"])
    assert any(not c or w == 0 for c, w, h, s in res["images"])
    assert res["errors"]
