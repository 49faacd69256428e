"""`python -m testbed.dask.lab_screenshot [--out docs/img/notebook-lab.png]`: a picture of the in-cluster
notebook as a user sees it, made reproducibly with real processes and Debian's headless Chromium.

A mutual-TLS scheduler and two workers (testbed/dask/tls_cluster.py), the lab from the stack's own
command, config and env (testbed/dask/jupyter.py), a notebook whose `Client()` (no arguments) keeps the
workers busy, and Chromium driven over its DevTools protocol the way a user clicks: log in with the
token, open the Dask side panel (its URL is already filled in from the stack's settings), open the task
stream, progress and worker memory panes. Not a test (nothing here asserts); needs `apt-get install
chromium`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import websocket  # websocket-client, a dependency of the kubernetes client

from testbed.dask.jupyter import Lab
from testbed.dask.procs import REPO, wait_for
from testbed.dask.tls_cluster import tls_cluster

WORKLOAD = """
import random, time
from distributed import Client
client = Client()
def step(i):
    time.sleep(random.uniform(0.2, 0.8))
    return i
futures = client.map(step, range(4000))
total = client.submit(sum, futures)
client
"""


class Browser:
    """One Chromium page over the DevTools protocol (just enough: navigate, evaluate, screenshot)."""

    def __init__(self, endpoint: str) -> None:
        self.ws = websocket.create_connection(endpoint, timeout=60, suppress_origin=True)
        self.ids = itertools.count(1)

    def call(self, method: str, **params: object) -> dict:
        call_id = next(self.ids)
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str) -> object:
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        return result["result"].get("value")

    def wait(self, expression: str, timeout: float = 90) -> object:
        return wait_for(lambda: self.evaluate(expression), timeout, expression, every=0.5)


@contextlib.contextmanager
def chromium(width: int, height: int) -> Iterator[Browser]:
    profile = Path(tempfile.mkdtemp(prefix="chromium-"))
    command = [shutil.which("chromium") or "chromium", "--headless=new", "--no-sandbox", "--disable-gpu"]
    command += [f"--window-size={width},{height}", "--remote-debugging-port=0", f"--user-data-dir={profile}"]
    command += ["--no-first-run", "about:blank"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        wait_for(lambda: port_file.exists() and port_file.read_text().count("\n") >= 1, 60, "Chromium")
        port = port_file.read_text().split()[0]
        pages = json.loads(_http(f"http://127.0.0.1:{port}/json/list"))
        page = next(p for p in pages if p["type"] == "page")
        browser = Browser(page["webSocketDebuggerUrl"])
        browser.call("Page.enable")
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        yield browser
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
        shutil.rmtree(profile, ignore_errors=True)


def _http(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def click(browser: Browser, element_js: str) -> None:
    """A real mouse click at the element's centre (Lumino's tab bars listen to pointer events)."""
    centre = (
        f"(() => {{ const e = {element_js}; if (!e) return null; const r = e.getBoundingClientRect();"
        " return r.width ? [r.x + r.width / 2, r.y + r.height / 2] : null; })()"
    )
    x, y = browser.wait(centre)  # type: ignore[misc]
    for kind in ("mousePressed", "mouseReleased"):
        browser.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)


def press(browser: Browser, key: str, code: str, key_code: int, modifiers: int = 0) -> None:
    """One key stroke (modifiers: 2 Ctrl, 8 Shift)."""
    for kind in ("rawKeyDown", "keyUp"):
        browser.call(
            "Input.dispatchKeyEvent",
            type=kind,
            key=key,
            code=code,
            windowsVirtualKeyCode=key_code,
            modifiers=modifiers,
        )


def by_text(selector: str, text: str) -> str:
    every = f"[...document.querySelectorAll({json.dumps(selector)})]"
    return f"{every}.find(e => e.textContent.trim() === {json.dumps(text)})"


def shoot(out: Path, width: int, height: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="notebook-shot-"))
    try:
        with tls_cluster(work / "cluster", workers=2) as cluster, cluster.lab(work / "lab") as lab:
            kernel = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
            notebook = {
                "cells": [_cell(WORKLOAD)],
                "metadata": {"kernelspec": kernel},
                "nbformat": 4,
                "nbformat_minor": 5,
            }
            assert lab.request(
                "/api/contents/dask.ipynb", method="PUT", body={"type": "notebook", "content": notebook}
            ).status in (200, 201)
            with chromium(width, height) as browser:
                browser.call("Page.navigate", url=f"{lab.url}/lab/tree/dask.ipynb?token={lab.token}")
                browser.wait("!!document.querySelector('.jp-Notebook .jp-Cell')")
                wait_for(lambda: _kernel_idle(lab), 90, "the notebook's kernel")
                browser.evaluate("document.querySelector('.jp-Notebook .jp-Cell').click()")
                press(browser, "Enter", "Enter", 13, modifiers=8)  # Shift+Enter: run the cell
                click(browser, "document.querySelector('[data-id=\"dask-dashboard-launcher\"]')")
                browser.wait(f"!!{by_text('.dask-DashboardListing-item', 'Task Stream')}")  # the URL answered
                # the extension's own layout (task stream, workers' memory, progress beside the notebook),
                # through the command palette as a user would: Ctrl+Shift+C, the command's name, Enter
                press(browser, "C", "KeyC", 67, modifiers=2 | 8)
                browser.wait("!!document.querySelector('.jp-ModalCommandPalette input')")
                browser.call("Input.insertText", text="Launch Dask Dashboard Layout")
                time.sleep(1)
                press(browser, "Enter", "Enter", 13)
                browser.wait(f"!!{by_text('.lm-TabBar-tabLabel', 'Task Stream')}")
                time.sleep(8)  # the panes draw a few seconds of the workload
                shot = browser.call("Page.captureScreenshot", format="png")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(base64.b64decode(shot["data"]))
        print(f"wrote {out}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _kernel_idle(lab: Lab) -> bool:
    answer = lab.request("/api/kernels")  # may answer 500 while a kernel is still starting
    kernels = answer.json() if answer.status == 200 else []
    return bool(kernels) and all(k["execution_state"] == "idle" for k in kernels)  # type: ignore[union-attr]


def _cell(source: str) -> dict:
    return {
        "cell_type": "code",
        "metadata": {},
        "source": source.strip(),
        "outputs": [],
        "execution_count": None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img" / "notebook-lab.png")
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=1000)
    args = parser.parse_args()
    shoot(args.out, args.width, args.height)


if __name__ == "__main__":
    main()
