"""A child process for the multi-process store tests (run as a script).

python _child.py hold DB SECONDS        acquire, print "held PID", hold, close
python _child.py hold-until-told DB     acquire, print "held PID", hold until a line
                                        (or EOF) on stdin, close, print "released"
python _child.py write-forever DB [RUN] write checkpoints of run RUN (default "child"),
                                        print "acked I" after each
python _child.py write-then-exit DB N   write N checkpoints, then os._exit without close
python _child.py write-no-close DB N    write N checkpoints, then exit normally, no close
python _child.py two-stores DB          write through two stores on DB, flush one, os._exit
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import time

from wfnb.model import RunStatus, StepStatus
from wfnb.store.base import Batch, RunRecord, StepRecord
from wfnb.store.duckdb import DuckDBStore


def record(i: int, run_id: str = "child") -> StepRecord:
    return StepRecord(
        run_id=run_id,
        step_id=f"s{i}",
        attempt=1,
        status=StepStatus.COMPLETED,
        started_at=time.time(),
        ended_at=time.time(),
        output={"i": i, "t": (i,)},
        has_output=True,
    )


async def main(mode: str, path: str, arg: str | None) -> None:
    store = DuckDBStore(path, lock_timeout=20.0)
    run = RunRecord(
        run_id="child",
        workflow="w",
        definition_hash="h",
        status=RunStatus.RUNNING,
        inputs={},
        created_at=time.time(),
        owner=f"child:{os.getpid()}",
    )
    if mode == "two-stores":
        other = DuckDBStore(path)
        await store.write(Batch(runs=[run]))
        await other.write(Batch(steps=[record(0)]))
        await store.flush()  # folds and empties the journal: other's step must be in it
        os._exit(0)
    if mode in ("hold", "hold-until-told"):
        await store.acquire()
        await store.write(Batch(runs=[run]))
        print(f"held {os.getpid()}", flush=True)
        if mode == "hold":
            await asyncio.sleep(float(arg or 1))
        else:
            await asyncio.to_thread(sys.stdin.readline)
        await store.close()
        print("released", flush=True)
    elif mode == "write-forever":
        run_id = arg or "child"
        await store.acquire()
        await store.write(Batch(runs=[dataclasses.replace(run, run_id=run_id)]))
        i = 0
        while True:
            await store.write(Batch(steps=[record(i, run_id)]))
            print(f"acked {i}", flush=True)
            i += 1
    elif mode in ("write-then-exit", "write-no-close"):
        await store.write(Batch(runs=[run]))
        for i in range(int(arg or 1)):
            await store.write(Batch(steps=[record(i)]))
        if mode == "write-then-exit":
            os._exit(0)  # no close, no fold: only the journal has the steps


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))
