"""The process the crash tests kill: it runs (or resumes) one workflow on a DuckDB file.

    python _crash_child.py start DB LOG          prints "run RUN_ID", then "status S"
    python _crash_child.py resume DB LOG RUN_ID  prints "status S"

Every step execution appends "STEP ATTEMPT PID" to LOG *before* doing its work, so
the test can count how often each step really ran. ``WFNB_CRASH_AT`` (read by the
engine) makes the process die at an exact checkpoint boundary.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

import pandas as pd

import wfnb
from wfnb.model import RunStatus
from wfnb.store.duckdb import DuckDBStore
from wfnb.testing import assert_same_value

WORKFLOW = """
steps:
  s1: {code: work, with: {name: s1}}
  s2: {code: work, needs: [s1], with: {name: s2}}
  f1: {code: work, needs: [s2], with: {name: f1}}
  f2: {code: work, needs: [s2], with: {name: f2}}
  f3: {code: work, needs: [s2], with: {name: f3}}
  f4: {code: work, needs: [s2], with: {name: f4}}
  s3: {code: frame, needs: [f1, f2, f3, f4], with: {name: s3}}
  s4: {code: objects, needs: [s3], with: {name: s4}}
  s5: {code: work, needs: [s4], with: {name: s5}}
"""
STEPS = ["s1", "s2", "f1", "f2", "f3", "f4", "s3", "s4", "s5"]
DELAY = float(os.environ.get("WFNB_TEST_DELAY", "0.02"))


def expected_output(name: str) -> Any:
    """What each step returns: JSON, a DataFrame (a DuckDB table), a pickled object."""
    if name == "s3":
        return pd.DataFrame({"step": [name, name], "n": [1, 2], "x": [0.5, None]})
    if name == "s4":
        return {"set": {1, 2}, "tuple": (name, 1), "bytes": b"\x00"}
    return {"name": name, "values": [1, 2.5, None], "nested": {"k": [name]}}


def namespace(log: str) -> dict[str, Any]:
    def note(name: str, attempt: int) -> None:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, f"{name} {attempt} {os.getpid()}\n".encode())
        finally:
            os.close(fd)

    def run(name: str, ctx: wfnb.StepContext) -> Any:
        note(name, ctx.attempt)
        time.sleep(DELAY)
        return expected_output(name)

    return {"work": run, "frame": run, "objects": run}


async def main(mode: str, db: str, log: str, run_id: str | None) -> None:
    engine = wfnb.Engine(store=DuckDBStore(db), namespace=namespace(log))
    try:
        if mode == "start":
            handle = await engine.start(wfnb.Workflow.from_yaml(WORKFLOW, name="crashy"))
            print(f"run {handle.id}", flush=True)
        else:
            assert run_id is not None
            record = await engine.store.get_run(run_id=run_id)
            assert record is not None, run_id
            if record.status is RunStatus.COMPLETED:
                print("status completed", flush=True)
                return
            handle = await engine.resume(run_id)
        result = await handle.wait()
        print(f"status {result.status.value}", flush=True)
        assert sorted(result.outputs) == sorted(STEPS), result.outputs
        for name in STEPS:
            assert_same_value(result.outputs[name], expected_output(name))
        print("outputs ok", flush=True)
    finally:
        await engine.close()


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(main(args[0], args[1], args[2], args[3] if len(args) > 3 else None))
