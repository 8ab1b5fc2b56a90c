"""A real JupyterLab on 127.0.0.1 and Debian's Chromium driven by Playwright.

Everything JupyterLab writes (config, data, runtime, settings, workspaces) goes to a
temporary directory, and the notebooks it serves are copies, so a test run leaves
the repository alone. Nothing leaves 127.0.0.1: the news feed and the update check
are switched off, and Chromium is told not to phone home.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    process: subprocess.Popen[bytes]
    log: Path

    def api(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Authorization": f"token {self.token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(
            f"{self.url}{path}", method=method, headers=headers, data=data
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        return json.loads(body) if body else None

    def open_url(self, notebook: str) -> str:
        return f"{self.url}/lab/tree/{notebook}?token={self.token}"

    def theme(self, name: str) -> None:
        """Switch JupyterLab's theme (as Settings › Theme does); pages loaded
        afterwards use it."""
        settings = {"theme": name}
        self.api(
            "PUT",
            "/lab/api/settings/@jupyterlab/apputils-extension:themes",
            {"raw": json.dumps(settings)},
        )

    def shut_down_kernels(self) -> None:
        """Delete every session (which shuts its kernel down), as a user closing
        and shutting down would; a notebook opened afterwards gets a fresh kernel."""
        for session in self.api("GET", "/api/sessions"):
            self.api("DELETE", f"/api/sessions/{session['id']}")
        deadline = time.monotonic() + 60
        while self.api("GET", "/api/kernels"):
            assert time.monotonic() < deadline, "kernels still running after their sessions went"
            time.sleep(0.2)


def _settings(directory: Path) -> None:
    """User settings: no news feed, no update check (both would go to the internet)."""
    notification = directory / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True)
    (notification / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    base = tmp_path_factory.mktemp("lab")
    root = base / "notebooks"
    root.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "WFNB_DB"))}
    env.update(
        JUPYTER_CONFIG_DIR=str(base / "config"),
        JUPYTER_DATA_DIR=str(base / "data"),
        JUPYTER_RUNTIME_DIR=str(base / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(base / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"),
        IPYTHONDIR=str(base / "ipython"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    )
    _settings(base / "settings")
    token = secrets.token_hex(16)
    port = free_port()
    log = base / "lab.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyterlab",
                "--allow-root",
                "--no-browser",
                "--ip=127.0.0.1",
                f"--port={port}",
                f"--IdentityProvider.token={token}",
                f"--ServerApp.root_dir={root}",
                "--LabApp.news_url=None",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            ],
            env=env,
            cwd=root,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = Lab(f"http://127.0.0.1:{port}", token, root, process, log)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, f"jupyter lab exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"jupyter lab did not answer:\n{log.read_text()}"
            try:
                running.api("GET", "/api/status")
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.25)
        yield running
    finally:
        # The server may be the thing that failed; stop it anyway.
        with contextlib.suppress(Exception):
            running.shut_down_kernels()
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where pictures go: ``WFNB_SCREENSHOTS`` (scripts/refresh-screenshots.sh sets
    it to docs/images), else a temporary directory, so that running the suite does
    not rewrite tracked files."""
    chosen = os.environ.get("WFNB_SCREENSHOTS")
    path = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def copy_notebook(lab: Lab, name: str, extra_cells: Sequence[str] = ()) -> str:
    """Copy notebooks/NAME into the lab's root without its outputs (as a person
    would open it to run it), with ``extra_cells`` (code) appended."""
    import nbformat

    notebook = nbformat.read(REPO / "notebooks" / name, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    for source in extra_cells:
        notebook.cells.append(nbformat.v4.new_code_cell(source))
    nbformat.write(notebook, lab.root / name)
    for helper in (REPO / "notebooks").glob("*.py"):
        if helper.name != "conftest.py":
            shutil.copy(helper, lab.root / helper.name)
    return name
