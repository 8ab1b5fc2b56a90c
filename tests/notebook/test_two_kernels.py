"""Two real kernels on one DuckDB file at once.

DuckDB lets one process at a time open the file; a kernel's engine holds it while
it drives a run and lets it go when its runs end or pause. So two kernels that
start workflows on the same store at the same instant take turns: one waits for
the other (off its loop), and every checkpoint of both runs is kept. The approval
in each workflow makes the turns go both ways: each run pauses (letting the file
go), then both decisions arrive at once and each run takes the store back.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from wfnb.model import RunStatus, StepStatus
from wfnb.store.duckdb import DuckDBStore

from .conftest import Kernel

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(300)]

SETUP = """
%load_ext wfnb
async def work(x=0):
    return x
"""

STEPS = {"a", "b", "c", "review", "d"}


def workflow(name: str) -> str:
    return f"""%%workflow {name}
steps:
  a: {{code: work, with: {{x: 1}}}}
  b: {{code: work, needs: [a], with: {{x: 2}}}}
  c: {{code: work, needs: [a], with: {{x: 3}}}}
  review: {{approval: {{prompt: "Ship {name}?"}}, needs: [b, c]}}
  d: {{code: work, needs: [review], with: {{x: "{{{{ steps.b.output + steps.c.output }}}}"}}}}
"""


def ok(kernel: Kernel, msg_id: str) -> str:
    reply = kernel.wait_reply(msg_id, timeout=120)
    assert reply.status == "ok", reply.error or reply.stderr
    assert "Error" not in reply.stderr, reply.stderr
    return reply.stdout


def test_two_kernels_run_and_query_one_store_at_once(kernel_factory, tmp_path: Path) -> None:
    kernels = {"left": kernel_factory(), "right": kernel_factory()}  # one cwd: one file
    for kernel in kernels.values():
        assert kernel.run(SETUP).status == "ok"

    # Both start at the same instant; each cell returns once its run is recorded.
    started = {name: k.send(workflow(name)) for name, k in kernels.items()}
    for name, k in kernels.items():
        ok(k, started[name])
    paused = {
        name: k.send("r = await _wf_run\nprint(r.status.value, _wf_run.id)")
        for name, k in kernels.items()
    }
    run_ids = {}
    for name, k in kernels.items():
        status, run_ids[name] = ok(k, paused[name]).split()
        assert status == "paused"

    # Both decisions at once: each run takes the store back in turn, ends, and
    # its kernel queries the history (%wfsql among other lines of a cell).
    approved = {name: k.send("%workflow approve _wf_run review") for name, k in kernels.items()}
    queried = {
        name: k.send(
            "r = await _wf_run.wait()\n"
            f"mine = %wfsql SELECT step_id FROM steps WHERE run_id = '{run_ids[name]}' "
            "AND status = 'completed'\n"
            "print(r.status.value, r.outputs['d'], sorted(mine['step_id']))"
        )
        for name, k in kernels.items()
    }
    for name, k in kernels.items():
        ok(k, approved[name])
        status, d, steps = ok(k, queried[name]).split(" ", 2)
        assert (status, d) == ("completed", "5")
        assert steps.strip() == str(sorted(STEPS))

    # A third open of the file, once both kernels let it go, finds every checkpoint.
    async def history() -> dict[str, tuple[RunStatus, dict[str, StepStatus]]]:
        store = DuckDBStore(tmp_path / ".wfnb" / "wfnb.duckdb", lock_timeout=60)
        try:
            found = {}
            for name, run_id in run_ids.items():
                run = await store.get_run(run_id=run_id)
                assert run is not None, name
                steps = await store.get_steps(run_id=run_id)
                found[name] = (run.status, {s.step_id: s.status for s in steps})
            return found
        finally:
            await store.close()

    found = asyncio.run(history())
    assert run_ids["left"] != run_ids["right"]
    for name in kernels:
        status, steps = found[name]
        assert status is RunStatus.COMPLETED, name
        assert steps == dict.fromkeys(STEPS, StepStatus.COMPLETED), name
