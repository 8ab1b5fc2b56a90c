"""An http step whose process is SIGKILLed mid-request runs again on resume in a
new process, with the same ``Idempotency-Key``: what lets a server do it once."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.store._procs import read_line, spawn
from wfnb.model import StepStatus
from wfnb.steps.http import IN_FLIGHT
from wfnb.store.base import CallRecord, StepRecord
from wfnb.store.duckdb import DuckDBStore

from ..conftest import arun
from .conftest import Handler, LocalServer, Reply, Seen

pytestmark = pytest.mark.crash

CHILD = str(Path(__file__).with_name("_http_child.py"))


def test_idempotency_key_survives_sigkill_and_resume(server: LocalServer, tmp_path: Path) -> None:
    first_seen = threading.Event()

    def pay(handler: Handler, seen: Seen) -> None:
        if not first_seen.is_set():
            first_seen.set()
            server.closing.wait(60)  # the first request never gets an answer
            return
        handler.send(Reply(200, {"paid": True}))

    server.routes["/pay"] = pay
    db = tmp_path / "runs.duckdb"
    child = spawn(CHILD, "start", str(db), server.url("/pay"))
    run_id = read_line(child, "run ").split()[1]
    server.wait_for("/pay", 1)
    child.kill()  # SIGKILL while the request is in flight
    child.communicate(timeout=60)
    assert child.returncode == -9

    resumed = spawn(CHILD, "resume", str(db), run_id)
    assert read_line(resumed, "status ") == "status completed"
    resumed.communicate(timeout=60)

    first, again = server.seen("/pay")
    assert first.headers["idempotency-key"] == again.headers["idempotency-key"]
    assert first.json == again.json == {"amount": 5}

    async def history() -> tuple[list[StepRecord], list[CallRecord]]:
        store = DuckDBStore(db)
        try:
            return await store.get_steps(run_id=run_id), await store.get_calls(run_id=run_id)
        finally:
            await store.close()

    steps, calls = arun(history())
    assert (steps[-1].attempt, steps[-1].status) == (2, StepStatus.COMPLETED)
    # The killed request never ended: its row, written before it was sent, says so.
    assert [(c.attempt, c.data.get("status"), c.data.get("error")) for c in calls] == [
        (1, None, IN_FLIGHT),
        (2, 200, None),
    ]
