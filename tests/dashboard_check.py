#!/usr/bin/env python3
"""End-to-end check of the host's web dashboard in headless Chromium (stdlib only).

Drives Chromium (--chromium, default /usr/bin/chromium) over the Chrome DevTools Protocol in pipe mode
(--remote-debugging-pipe): Chromium reads NUL-terminated JSON commands on its
fd 3 and writes NUL-terminated JSON replies/events on its fd 4.  Exit 0 when all
checks pass, else `FAIL: <what>` on stderr (plus page text and errors) and exit 1.
"""
import argparse, base64, fcntl, hashlib, json, os, re, shutil, signal, subprocess, sys
import tempfile, threading, time, urllib.error, urllib.parse, urllib.request

CHROMIUM = "/usr/bin/chromium"  # overridden by --chromium


class Fail(Exception):
    """A check failed; printed as `FAIL: <message>`."""


class CDPError(Fail):
    """A CDP command answered with an error (or a JS expression threw)."""


class Browser:
    """Headless Chromium plus a CDP session attached to one page."""

    def __init__(self, timeout, on_event, chromium=CHROMIUM):
        self.timeout, self.on_event, self.chromium = timeout, on_event, chromium
        self.cond = threading.Condition()  # guards replies/events/closed
        self.wlock = threading.Lock()
        self.replies, self.events, self.closed, self.next_id = {}, [], False, 0
        self.session = None
        self.tmp = tempfile.mkdtemp(prefix="dashboard-check-")
        cmd_r, self.cmd_w = os.pipe()  # we write commands -> Chromium's fd 3
        self.rep_r, rep_w = os.pipe()  # Chromium's fd 4 -> we read replies
        # Park the child's ends on fds >= 10 so that dup2 onto 3/4 in the child
        # can never clobber one of them.
        hi_r = fcntl.fcntl(cmd_r, fcntl.F_DUPFD_CLOEXEC, 10)
        hi_w = fcntl.fcntl(rep_w, fcntl.F_DUPFD_CLOEXEC, 10)
        for fd in (cmd_r, rep_w):
            os.close(fd)

        def child_fds():  # runs in the child between fork and exec
            os.dup2(hi_r, 3)  # dup2 clears close-on-exec on the new fd
            os.dup2(hi_w, 4)

        self.log_path = os.path.join(self.tmp, "chromium.log")
        # close_fds=False: close_fds would run *after* preexec_fn and close 3/4
        # again. Python's own fds are close-on-exec anyway (PEP 446). A new
        # session lets close() kill Chromium's helper processes too.
        try:
            with open(self.log_path, "wb") as log:
                self.proc = subprocess.Popen(
                    [self.chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
                     "--no-first-run", "--no-default-browser-check", "--disable-dev-shm-usage",
                     "--user-data-dir=" + os.path.join(self.tmp, "profile"),
                     "--remote-debugging-pipe", "--window-size=1400,1000", "about:blank"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, close_fds=False,
                    preexec_fn=child_fds, start_new_session=True)
        except OSError:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        for fd in (hi_r, hi_w):
            os.close(fd)
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self):
        buf = bytearray()
        while True:
            chunk = os.read(self.rep_r, 1 << 16)
            if not chunk:  # EOF: Chromium has exited
                break
            buf += chunk
            while (end := buf.find(b"\0")) >= 0:
                msg = json.loads(buf[:end])
                del buf[:end + 1]
                with self.cond:
                    if "id" in msg:
                        self.replies[msg["id"]] = msg
                    else:
                        self.events.append(msg)
                    self.cond.notify_all()
                if "id" not in msg and self.session and msg.get("sessionId") == self.session:
                    self.on_event(msg)
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def _died(self, what):
        with open(self.log_path, "rb") as f:
            tail = f.read()[-2000:].decode(errors="replace")
        return Fail(f"Chromium went away during {what} (exit code {self.proc.poll()}); its log:\n{tail}")

    def call(self, method, params=None, timeout=None, browser_level=False):
        """Send one CDP command and wait for its reply; returns `result`."""
        with self.cond:
            self.next_id += 1
            mid = self.next_id
        msg = {"id": mid, "method": method, "params": params or {}}
        if self.session and not browser_level:
            msg["sessionId"] = self.session
        data = json.dumps(msg).encode() + b"\0"
        try:
            with self.wlock:
                while data:
                    data = data[os.write(self.cmd_w, data):]
        except OSError:
            raise self._died(method) from None
        deadline = time.monotonic() + (timeout or self.timeout)
        with self.cond:
            while mid not in self.replies:
                if self.closed:
                    raise self._died(method)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Fail(f"no CDP reply to {method} within {timeout or self.timeout}s")
                self.cond.wait(left)
            reply = self.replies.pop(mid)
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error'].get('message')}")
        return reply.get("result", {})

    def wait_event(self, method, since, what):
        """Wait for a `method` event of our session arriving after index `since`."""
        deadline = time.monotonic() + self.timeout
        with self.cond:
            while True:
                for ev in self.events[since:]:
                    if ev.get("method") == method and ev.get("sessionId") == self.session:
                        return ev
                since = len(self.events)
                left = deadline - time.monotonic()
                if self.closed:
                    raise self._died(what)
                if left <= 0:
                    raise Fail(f"timed out after {self.timeout}s waiting for {what}")
                self.cond.wait(left)

    def open_page(self):
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget",
                                 {"targetId": target, "flatten": True})["sessionId"]

    def close(self):
        """Ask Chromium to quit, then SIGKILL its process group (our own child
        and its renderer/GPU helpers), then remove the temporary profile."""
        try:
            if self.proc.poll() is None:
                try:
                    self.call("Browser.close", timeout=3, browser_level=True)
                    self.proc.wait(5)
                except (Fail, subprocess.TimeoutExpired):
                    pass
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait()
        finally:
            os.close(self.cmd_w)
            shutil.rmtree(self.tmp, ignore_errors=True)


class Recorder:
    """Collects console errors and HTTP >= 400 responses (called on the reader thread)."""

    def __init__(self):
        self.errors, self.login_step = [], False

    def expected(self, status, url):
        # 401s while logging in are the point of that step.
        return self.login_step and status == 401

    def __call__(self, msg):
        m, p = msg.get("method"), msg.get("params", {})
        if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            frames = (p.get("stackTrace") or {}).get("callFrames") or [{}]
            self.errors.append(f"console.{p['type']}: {text} ({frames[0].get('url', '')})")
        elif m == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            text = (d.get("exception") or {}).get("description") or d.get("text")
            self.errors.append(f"uncaught exception: {text} ({d.get('url', '')}:{d.get('lineNumber')})")
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            e = p["entry"]
            # Chromium echoes each failed HTTP response as a "network" log entry.
            status = re.search(r"status of (\d+)", e.get("text", "")) if e.get("source") == "network" else None
            if status and self.expected(int(status.group(1)), e.get("url", "")):
                return
            self.errors.append(f"log ({e.get('source')}): {e.get('text')} ({e.get('url', '')})")
        elif m == "Network.responseReceived":
            status, url = p["response"]["status"], p["response"]["url"]
            if status >= 400 and not self.expected(status, url):
                self.errors.append(f"HTTP {status} for {url}")


def js(b, expr, await_promise=False, timeout=None):
    """Evaluate `expr` in the page and return its value (JSON-able)."""
    r = b.call("Runtime.evaluate", {"expression": expr, "returnByValue": True,
                                    "awaitPromise": await_promise}, timeout=timeout)
    if "exceptionDetails" in r:
        d = r["exceptionDetails"]
        raise CDPError(f"JS {expr[:60]!r} threw: {(d.get('exception') or {}).get('description') or d.get('text')}")
    return r["result"].get("value")


def wait_until(b, expr, what, timeout=None):
    """Poll the JS predicate `expr` until truthy. Errors while the page is
    navigating (destroyed execution context etc.) just mean "not yet"."""
    timeout = timeout or b.timeout
    deadline, last = time.monotonic() + timeout, None
    while True:
        try:
            if js(b, expr, timeout=10):
                return
        except CDPError as e:
            last = e
        if time.monotonic() > deadline:
            raise Fail(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last})" if last else ""))
        time.sleep(0.2)


def click(b, selector, what):
    """A real mouse click at the centre of the element, after scrolling to it."""
    sel = json.dumps(selector)
    box = js(b, f"""(() => {{ const el = document.querySelector({sel});
        if (!el) return null;
        el.scrollIntoView({{block: 'center', inline: 'center'}});
        const r = el.getBoundingClientRect();
        return {{x: r.left + r.width / 2, y: r.top + r.height / 2, w: r.width, h: r.height,
                 disabled: !!el.disabled}}; }})()""")
    if box is None:
        raise Fail(f"{what}: no element matches {selector}")
    if box["w"] <= 0 or box["h"] <= 0 or box["disabled"]:
        raise Fail(f"{what}: {selector} is hidden or disabled ({box})")
    x, y = box["x"], box["y"]
    if not js(b, f"document.querySelector({sel}).contains(document.elementFromPoint({x}, {y}))"):
        raise Fail(f"{what}: {selector} is covered by another element at ({x:.0f}, {y:.0f})")
    b.call("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
    for kind, buttons in (("mousePressed", 1), ("mouseReleased", 0)):
        b.call("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left",
                                            "buttons": buttons, "clickCount": 1})


def api_get(args, name):
    url = f"{args.url}/api/v1/instances/{urllib.parse.quote(name, safe='')}"
    req = urllib.request.Request(url)
    if args.token:
        req.add_header("Authorization", "Bearer " + args.token)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def venue_state(args, venue):
    """The trading state GET /api/v1/venues gives `venue`."""
    req = urllib.request.Request(f"{args.url}/api/v1/venues")
    if args.token:
        req.add_header("Authorization", "Bearer " + args.token)
    with urllib.request.urlopen(req, timeout=10) as r:
        return next((v["state"] for v in json.load(r) if v["venue"] == venue), None)


def wait_venue(args, venue, want, timeout):
    deadline, got = time.monotonic() + timeout, None
    while True:
        try:
            got = venue_state(args, venue)
        except (OSError, ValueError) as e:
            got = f"<{e}>"
        if got == want:
            return
        if time.monotonic() > deadline:
            raise Fail(f"API state of venue {venue} is {got!r}, expected {want!r} within {timeout}s")
        time.sleep(0.2)


def wait_api(args, field, want, timeout):
    """Poll GET /api/v1/instances/NAME until its `field` equals `want`."""
    deadline, got = time.monotonic() + timeout, None
    while True:
        try:
            got = api_get(args, args.instance).get(field)
        except (OSError, ValueError) as e:  # URLError/HTTPError are OSErrors
            got = f"<{e}>"
        if got == want:
            return
        if time.monotonic() > deadline:
            raise Fail(f"API {field} of {args.instance} is {got!r}, expected {want!r} within {timeout}s")
        time.sleep(0.25)


def run_checks(b, args, rec, digest):
    for domain in ("Runtime", "Log", "Page", "Network"):
        b.call(domain + ".enable")
    url = args.url + "/"

    def navigate():
        since = len(b.events)
        r = b.call("Page.navigate", {"url": url})
        if r.get("errorText"):
            raise Fail(f"navigating to {url}: {r['errorText']}")
        b.wait_event("Page.loadEventFired", since, f"the page load of {url}")

    if args.token:  # step 2: log in through the form
        rec.login_step = True
        navigate()
        field = "form#login input[name=token]"
        wait_until(b, f"!!document.querySelector({json.dumps(field)})", "the login form (form#login with input[name=token])")
        kind = js(b, f"document.querySelector({json.dumps(field)}).type")
        if kind != "password":
            raise Fail(f"login token input has type {kind!r}, expected 'password'")
        status = js(b, f"fetch({json.dumps(args.url + '/api/v1/instances')}, {{credentials: 'same-origin'}})"
                       ".then(r => r.status)", await_promise=True)
        if status != 401:
            raise Fail(f"GET /api/v1/instances before login answered {status}, expected 401")
        print("ok: login form shown, API answers 401 before login")
        js(b, f"""(() => {{ const f = document.querySelector('form#login');
            const i = f.querySelector('input[name=token]');
            i.value = {json.dumps(args.token)};
            i.dispatchEvent(new Event('input', {{bubbles: true}}));
            if (f.requestSubmit) f.requestSubmit(); else f.querySelector('button[type=submit]').click();
            }})()""")
        # The submit navigates; poll (tolerating the context switch) until the
        # login form is gone and the dashboard document has finished loading.
        wait_until(b, "!document.querySelector('form#login') && !!document.querySelector('#connection')"
                      " && document.readyState === 'complete'", "the dashboard after submitting the login form")
        rec.login_step = False
    else:
        navigate()

    wait_until(b, "document.querySelector('#connection')?.textContent.trim() === 'live'",
               "#connection to say 'live' (event stream connected)")
    print("ok: dashboard live")
    if args.token:
        if args.token in (js(b, "document.cookie") or ""):
            raise Fail("document.cookie contains the token (session cookie must be HttpOnly)")
        if args.token in js(b, "location.href"):
            raise Fail("the page URL contains the token")
        print("ok: token not in document.cookie nor in the URL")

    wait_until(b, "document.querySelectorAll('#fills tbody tr').length > 0", "a row in #fills")  # step 4
    print("ok: fills appear")

    # Step 5: pause and resume with real mouse clicks.
    row = f"#instances tbody tr[data-instance={json.dumps(args.instance)}]"
    cell = lambda f: f"document.querySelector({json.dumps(row + ' [data-field=' + f + ']')})?.textContent.trim()"
    wait_until(b, f"{cell('state')} === 'running'", f"instance {args.instance} to show state 'running'")
    click(b, row + " button[data-action=pause]", "pause button")
    wait_api(args, "state", "paused", 30)
    wait_until(b, f"{cell('state')} === 'paused'", "the state cell to say 'paused'")
    print("ok: pause")
    click(b, row + " button[data-action=resume]", "resume button")
    wait_api(args, "state", "running", 30)
    wait_until(b, f"{cell('state')} === 'running'", "the state cell to say 'running' after resume")
    print("ok: resume")

    if args.venue:  # halt and resume a live venue from its row
        vrow = f"#venues tbody tr[data-venue={json.dumps(args.venue)}]"
        vcell = lambda f: f"document.querySelector({json.dumps(vrow + ' [data-field=' + f + ']')})?.textContent.trim()"
        wait_until(b, f"{vcell('trading')} === 'active'", f"venue {args.venue} to show 'active'")
        click(b, vrow + " button[data-action=halt]", "halt button")
        wait_venue(args, args.venue, "halted", 30)
        wait_until(b, f"{vcell('trading')} === 'halted'", "the venue's trading cell to say 'halted'")
        print("ok: halt")
        click(b, vrow + " button[data-action=resume]", "venue resume button")
        wait_venue(args, args.venue, "active", 30)
        wait_until(b, f"{vcell('trading')} === 'active'", "the venue's trading cell to say 'active' again")
        print("ok: venue resume")

    # Step 6: hot-swap the wasm through the row's file input.
    old = api_get(args, args.instance).get("sha256")
    if old == digest:
        raise Fail(f"bad test input: {args.swap_wasm} has the running sha256 {old} already")
    root = b.call("DOM.getDocument", {"depth": 0})["root"]["nodeId"]
    file_sel = row + " input[type=file][data-action=swap-file]"
    node = b.call("DOM.querySelector", {"nodeId": root, "selector": file_sel}).get("nodeId")
    if not node:
        raise Fail(f"no element matches {file_sel}")
    b.call("DOM.setFileInputFiles", {"nodeId": node, "files": [args.swap_wasm]})
    if js(b, f"document.querySelector({json.dumps(file_sel)}).files.length") != 1:
        raise Fail("the swap file input did not take the file")
    click(b, row + " button[data-action=swap]", "swap button")
    wait_api(args, "sha256", digest, b.timeout)
    wait_until(b, f"({cell('sha256')} || '').startsWith({json.dumps(digest[:12])})",
               f"the sha256 cell to start with {digest[:12]}")
    print(f"ok: swap (sha256 {old[:12] if old else old} -> {digest[:12]})")

    time.sleep(1.5)  # step 7: let the charts draw
    png = b.call("Page.captureScreenshot", {"format": "png"})["data"]
    with open(args.screenshot, "wb") as f:
        f.write(base64.b64decode(png))
    print(f"ok: screenshot {args.screenshot}")

    if rec.errors:  # step 8
        raise Fail(f"{len(rec.errors)} console error(s) / failed HTTP response(s) recorded")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name in ("--url", "--instance", "--swap-wasm", "--screenshot"):
        ap.add_argument(name, required=True)
    ap.add_argument("--token", help="log in through the form with this token")
    ap.add_argument("--timeout", type=float, default=60, help="seconds per wait (default 60)")
    ap.add_argument("--chromium", default=CHROMIUM, help="the browser to drive")
    ap.add_argument("--venue", help="also halt and resume this live venue from the page")
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # progress lines in order when piped
    args.url = args.url.rstrip("/")
    args.swap_wasm = os.path.abspath(args.swap_wasm)
    rec, b = Recorder(), None
    try:
        with open(args.swap_wasm, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        b = Browser(args.timeout, rec, args.chromium)
        b.open_page()
        run_checks(b, args, rec, digest)
    except (Fail, OSError) as e:
        print(f"FAIL: {e}", file=sys.stderr)
        if b is not None and b.session and not b.closed:
            try:
                text = js(b, "document.body ? document.body.innerText : '(no body)'", timeout=5)
                print("--- page text ---\n" + str(text)[:3000], file=sys.stderr)
            except Fail:
                pass
        if rec.errors:
            print("--- console / HTTP errors ---\n" + "\n".join(rec.errors), file=sys.stderr)
        return 1
    finally:
        if b is not None:
            b.close()
    print("ok: all dashboard checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
