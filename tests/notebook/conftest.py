"""Fixtures for the notebook tests.

``shell``: a real IPython `InteractiveShell` with the extension loaded; cells run
with ``run_cell_async`` inside a running loop, as ipykernel runs them, so magics
see the loop they will see in a kernel. ``kernel``: a real ipykernel driven
through jupyter_client as a frontend would (execute requests, iopub, comm
messages), its working directory in ``tmp_path`` so its DuckDB file is private.
"""

from __future__ import annotations

import asyncio
import os
import queue
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


# -- an in-process IPython shell --------------------------------------------------------


@dataclass
class Cell:
    result: Any
    error: BaseException | None
    stdout: str
    stderr: str
    outputs: list[dict[str, Any]]

    @property
    def text(self) -> str:
        return "\n".join(o.get("text/plain", "") for o in self.outputs)


class Shell:
    def __init__(self, ip: Any) -> None:
        self.ip = ip

    async def run(self, source: str) -> Cell:
        from IPython.utils.capture import capture_output

        with capture_output() as captured:
            result = await self.ip.run_cell_async(
                source, store_history=False, transformed_cell=self.ip.transform_cell(source)
            )
        return Cell(
            result.result,
            result.error_in_exec or result.error_before_exec,
            captured.stdout,
            captured.stderr,
            [dict(o.data) for o in captured.outputs],
        )

    @property
    def ns(self) -> dict[str, Any]:
        return self.ip.user_ns


@pytest.fixture
def shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Shell]:
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WFNB_DB", raising=False)
    ip = InteractiveShell.instance()
    ip.reset(new_session=True)
    # The shell's user module becomes ``__main__``, with no ``__spec__``; a Dask
    # LocalCluster started later in the session spawns its nannies, and spawning
    # reads ``__main__.__spec__`` (an AttributeError without it).
    if not hasattr(ip.user_module, "__spec__"):
        ip.user_module.__spec__ = None
    # `%config Wfnb.db = ...` lives on in the shell's config (so it survives
    # %reload_ext); each test starts without it.
    ip.config.pop("Wfnb", None)
    yield Shell(ip)
    if "wfnb" in ip.extension_manager.loaded:
        ip.extension_manager.unload_extension("wfnb")
    from wfnb.notebook import extension

    extension._KEPT.clear()


# -- a real kernel ----------------------------------------------------------------------


@dataclass
class Reply:
    status: str
    stdout: str
    stderr: str
    error: str
    messages: list[dict[str, Any]] = field(default_factory=list)


class Kernel:
    """A kernel and a client; every iopub message ever received is kept in
    ``messages`` (widgets opened by background tasks arrive between cells)."""

    def __init__(self, km: Any, kc: Any) -> None:
        self.km, self.kc = km, kc
        self.messages: list[dict[str, Any]] = []

    def drain(self, timeout: float = 0.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                wait = max(0.0, deadline - time.monotonic())
                self.messages.append(self.kc.get_iopub_msg(timeout=wait or 0.01))
            except queue.Empty:
                if time.monotonic() >= deadline:
                    return

    def send(self, code: str) -> str:
        return self.kc.execute(code, store_history=False)

    def wait_reply(self, msg_id: str, timeout: float = 60) -> Reply:
        reply = self.kc.get_shell_msg(timeout=timeout)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = self.kc.get_shell_msg(timeout=timeout)
        # The reply can overtake the outputs: read iopub to this request's idle.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            mine = [m for m in self.messages if m["parent_header"].get("msg_id") == msg_id]
            if any(
                m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
                for m in mine
            ):
                break
            self.drain(0.05)
        mine = [m for m in self.messages if m["parent_header"].get("msg_id") == msg_id]

        def stream(name: str) -> str:
            return "".join(
                m["content"]["text"]
                for m in mine
                if m["msg_type"] == "stream" and m["content"]["name"] == name
            )

        error = "".join(
            f"{m['content']['ename']}: {m['content']['evalue']}"
            for m in mine
            if m["msg_type"] == "error"
        )
        return Reply(reply["content"]["status"], stream("stdout"), stream("stderr"), error, mine)

    def run(self, code: str, timeout: float = 60) -> Reply:
        return self.wait_reply(self.send(code), timeout)

    def value(self, expression: str) -> str:
        reply = self.run(f"print({expression})")
        assert reply.status == "ok", reply.error or reply.stderr
        return reply.stdout.strip()

    def until(self, predicate: Callable[[], bool], timeout: float = 30, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or predicate}")
            self.drain(0.1)

    def widgets(self, model: str, **state: Any) -> list[str]:
        """Comm ids of the widgets of ``model`` whose state has these values."""
        found = []
        for m in self.messages:
            if m["msg_type"] != "comm_open":
                continue
            data = m["content"]["data"].get("state", {})
            if data.get("_model_name") == model and all(data.get(k) == v for k, v in state.items()):
                found.append(m["content"]["comm_id"])
        return found

    def comm(self, comm_id: str, data: dict[str, Any]) -> None:
        msg = self.kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
        self.kc.shell_channel.send(msg)

    def click(self, comm_id: str) -> None:
        """What a browser sends when a Button is clicked (ipywidgets 8 protocol)."""
        self.comm(comm_id, {"method": "custom", "content": {"event": "click"}})

    def set_state(self, comm_id: str, **state: Any) -> None:
        self.comm(comm_id, {"method": "update", "state": state, "buffer_paths": []})


def start_kernel(cwd: Path) -> Kernel:
    from jupyter_client.manager import KernelManager

    env = {k: v for k, v in os.environ.items() if k != "WFNB_DB"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(cwd), env=env)
    kc = km.blocking_client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    kernel = Kernel(km, kc)
    kernel.drain(0.2)
    return kernel


def stop_kernel(kernel: Kernel) -> None:
    kernel.kc.stop_channels()
    if kernel.km.is_alive():
        kernel.km.shutdown_kernel(now=True)


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[Kernel]:
    k = start_kernel(tmp_path)
    yield k
    stop_kernel(k)


@pytest.fixture
def kernel_factory(tmp_path: Path) -> Iterator[Callable[[], Kernel]]:
    started: list[Kernel] = []

    def make() -> Kernel:
        started.append(start_kernel(tmp_path))
        return started[-1]

    yield make
    for k in started:
        stop_kernel(k)


def arun_in_loop(coro: Any) -> Any:
    return asyncio.run(coro)
