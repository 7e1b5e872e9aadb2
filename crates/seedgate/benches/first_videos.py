#!/usr/bin/env python3
"""From a clone to the second video: how long a newcomer waits.

Clones the repository, runs the README's command (`cargo run --release -- serve`) in the clone,
signs in to the console in headless Chromium with the key it printed, generates a video with the
form's defaults and a prompt, then presses "Use these settings" on it and generates again.
Prints the time from the start of the clone to each step. Chromium is driven through
chromedriver's W3C WebDriver protocol with nothing but the standard library.

    python3 crates/seedgate/benches/first_videos.py [REPOSITORY]   # default: this checkout

Port 8080 must be free; the clone is made in a temporary folder and removed afterwards.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

START = time.monotonic()
PROMPT = "a paper kite over a windy beach"


def since_start():
    return time.monotonic() - START


def log(step):
    print(f"{since_start():8.1f} s  {step}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """A headless Chromium session through chromedriver."""

    def __init__(self, profile):
        port = free_port()
        self.driver = subprocess.Popen(
            ["chromedriver", f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.base = f"http://127.0.0.1:{port}"
        capabilities = {
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": "/usr/bin/chromium",
                        "args": [
                            "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                            "--disable-background-networking", "--disable-component-update",
                            "--disable-dev-shm-usage", "--window-size=1440,900",
                            f"--user-data-dir={profile}",
                        ],
                    },
                }
            }
        }
        deadline = time.monotonic() + 20
        while True:
            try:
                self.session = self.call("POST", "/session", capabilities)["sessionId"]
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def call(self, method, path, body=None):
        data = json.dumps(body if body is not None else {}).encode() if method == "POST" else None
        request = urllib.request.Request(
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)["value"]

    def run(self, script, *args):
        return self.call("POST", f"/session/{self.session}/execute/sync", {"script": script, "args": list(args)})

    def goto(self, url):
        self.call("POST", f"/session/{self.session}/url", {"url": url})

    def until(self, script, seconds, what):
        deadline = time.monotonic() + seconds
        while True:
            value = self.run(script)
            if value is not None:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {seconds} s for {what}")
            time.sleep(0.1)

    def close(self):
        try:
            self.call("DELETE", f"/session/{self.session}")
        finally:
            self.driver.kill()


VIDEO_OF_ANOTHER_TASK = """
const c = document.querySelector('#detail code'); const v = document.getElementById('player');
return c && c.textContent !== arguments[0] && v && v.readyState >= 1 ? c.textContent : null;
"""
PRICED = """
const q = document.getElementById('quote');
return q.className === 'quote' && !document.getElementById('submit').disabled ? true : null;
"""


def main():
    repository = sys.argv[1] if len(sys.argv) > 1 else os.getcwd()
    workdir = tempfile.mkdtemp(prefix="seedgate-first-videos-")
    clone = os.path.join(workdir, "seedgate")
    server = None
    browser = None
    try:
        subprocess.run(["git", "clone", "-q", repository, clone], check=True)
        log("cloned")
        server = subprocess.Popen(
            ["cargo", "run", "--release", "--", "serve"], cwd=clone, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, start_new_session=True,
        )
        key = None
        for line in server.stdout:
            found = re.search(r"sg_test_\S+", line)
            if found:
                key = found.group(0)
                break
        if key is None:
            raise RuntimeError("serve printed no key")
        # Read on, so that a full pipe never stalls the server's logging.
        threading.Thread(target=lambda: server.stdout.read(), daemon=True).start()
        log("built; serve printed the key")
        browser = Browser(os.path.join(workdir, "profile"))
        browser.goto("http://127.0.0.1:8080/console")
        browser.until("return document.getElementById('key') ? true : null;", 30, "the sign-in form")
        browser.run(
            "document.getElementById('key').value = arguments[0];"
            "document.getElementById('sign-in-button').click();", key
        )
        browser.until("return document.getElementById('model').options.length > 0 ? true : null;", 30, "the form")
        browser.run(
            "const p = document.getElementById('prompt'); p.value = arguments[0];"
            "p.dispatchEvent(new Event('input', {bubbles: true}));", PROMPT
        )
        browser.until(PRICED, 30, "the quote")
        browser.run("document.getElementById('submit').click();")
        first = browser.until(VIDEO_OF_ANOTHER_TASK.replace("arguments[0]", "''"), 300, "the first video")
        log(f"first video playable ({first})")
        browser.run("document.getElementById('use-settings').click();")
        browser.until(PRICED, 30, "the refilled form's quote")
        browser.run("document.getElementById('submit').click();")
        second = browser.until(VIDEO_OF_ANOTHER_TASK.replace("arguments[0]", repr(first)), 300, "the second video")
        log(f"second video playable, made with Use these settings ({second})")
    finally:
        if browser:
            browser.close()
        if server:
            os.killpg(server.pid, signal.SIGINT)
            server.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
