#!/usr/bin/env python3
"""The `tuna serve` playground in headless Chromium (Debian `chromium`).

    python3 tools/serve_browser_test.py --url http://127.0.0.1:PORT/ --screenshot out.png [--chromium PATH]

Standard library only. Chromium runs headless with --remote-debugging-pipe
(the DevTools protocol as NUL-separated JSON on file descriptors 3 and 4);
the page is opened at #selftest, where it streams a chat about an image it
draws and generates two images into its gallery, as a user would with the
page's own code. The script waits for the page's verdict
(#selftest data-status "pass" or "fail"), saves a screenshot, and exits
non-zero unless the page passed. Run by tests/test_serve_clients.c.
"""
import argparse
import base64
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time


class Browser:
    def __init__(self, chromium, profile):
        to_child_r, self.to_child = os.pipe()
        self.from_child, from_child_w = os.pipe()
        # the child's fd 3 reads our commands, its fd 4 writes the answers (dup2 leaves them inheritable;
        # close_fds would run after this and close them, so it is off)
        def wire():
            r, w = os.dup(to_child_r), os.dup(from_child_w)
            os.dup2(r, 3)
            os.dup2(w, 4)
            for fd in (r, w, to_child_r, from_child_w, self.to_child, self.from_child):
                if fd > 4:
                    os.close(fd)
        self.proc = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--disable-extensions", "--hide-scrollbars", "--remote-debugging-pipe", "--user-data-dir=" + profile,
             "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=False, preexec_fn=wire)
        os.close(to_child_r)
        os.close(from_child_w)
        self.buf = b""
        self.next_id = 0

    def call(self, method, params=None, session=None, timeout=30):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.time() + timeout
        while True:
            while b"\0" in self.buf:
                raw, self.buf = self.buf.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self.next_id:
                    if "error" in reply:
                        raise RuntimeError("%s: %s" % (method, reply["error"]))
                    return reply.get("result", {})
            left = deadline - time.time()
            if left <= 0:
                raise TimeoutError(method)
            ready, _, _ = select.select([self.from_child], [], [], left)
            if ready:
                chunk = os.read(self.from_child, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the pipe")
                self.buf += chunk

    def close(self):
        try:
            self.call("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--screenshot", required=True)
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    ap.add_argument("--timeout", type=float, default=60)
    a = ap.parse_args()
    profile = tempfile.mkdtemp(prefix="tuna-chromium-")
    b = Browser(a.chromium, profile)
    try:
        target = b.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = b.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        b.call("Emulation.setDeviceMetricsOverride",
               {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session)
        b.call("Page.enable", session=session)
        b.call("Page.navigate", {"url": a.url.rstrip("#") + "#selftest"}, session)
        state, deadline = {}, time.time() + a.timeout
        while time.time() < deadline:
            r = b.call("Runtime.evaluate", {
                "expression": "(() => { const s = document.getElementById('selftest'); return s ? "
                              "Object.assign({}, s.dataset, {gallery: document.querySelectorAll('#gallery img')"
                              ".length, messages: document.querySelectorAll('#messages .msg').length}) : {}; })()",
                "returnByValue": True}, session)
            state = r.get("result", {}).get("value") or {}
            if state.get("status") in ("pass", "fail"):
                break
            time.sleep(0.2)
        shot = b.call("Page.captureScreenshot", {"format": "png"}, session)
        with open(a.screenshot, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        print("playground self-test:", json.dumps(state))
        print("screenshot:", a.screenshot)
        ok = state.get("status") == "pass" and state.get("gallery") == 2 and state.get("messages", 0) >= 2
        if not ok:
            print("FAIL: the playground's self-test did not pass", file=sys.stderr)
        return 0 if ok else 1
    finally:
        b.close()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
