"""Real kernels driven through jupyter_client, as JupyterLab drives them: execute
requests, iopub messages, and widget clicks sent as comm messages."""

from __future__ import annotations

import json
import signal

import pytest

from tests.store._procs import read_line, spawn_child, tell

from .conftest import Kernel

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(180)]

SETUP = """
%load_ext wfnb
import asyncio
async def work(x=0, delay=0.0):
    await asyncio.sleep(delay)
    return x
gates = {}
async def held(x=0, gate="prep"):
    # waits until the test lets it go (`gates[gate].set()`), without a timer
    await gates.setdefault(gate, asyncio.Event()).wait()
    return x
"""

GATED = """%%workflow gated
steps:
  prep: {code: work, with: {x: 1}}
  review: {approval: {prompt: "Ship it?"}, needs: [prep]}
  ship: {code: work, needs: [review], with: {x: 2}}
"""
#: the same, with prep waiting until the test opens its gate
HELD = GATED.replace("{code: work, with: {x: 1}}", "{code: held, with: {x: 1}}")


def load(kernel: Kernel) -> None:
    reply = kernel.run(SETUP)
    assert reply.status == "ok", reply.error or reply.stderr


def test_cell_returns_at_once_and_a_click_on_approve_finishes_the_run(kernel):
    load(kernel)
    reply = kernel.run(HELD)
    assert reply.status == "ok", reply.error or reply.stderr
    # The cell returned while its run goes on: prep waits for us.
    assert kernel.value("_wf_run.status.value") in ("pending", "running")
    assert kernel.run("gates.setdefault('prep', asyncio.Event()).set()").status == "ok"

    # The Approve button appears (a comm_open on iopub) once the run pauses.
    kernel.until(lambda: kernel.widgets("ButtonModel", description="Approve"), what="Approve")
    assert kernel.value("_wf_run.status.value") == "paused"
    [comment] = kernel.widgets("TextModel", placeholder="comment (optional)")
    kernel.set_state(comment, value="lgtm")
    [approve] = kernel.widgets("ButtonModel", description="Approve")
    kernel.click(approve)

    reply = kernel.run(
        "r = await _wf_run.wait()\nprint(r.status.value, r.outputs['ship'], r.outputs['review']['comment'])"
    )
    assert reply.status == "ok", reply.error
    assert reply.stdout.split() == ["completed", "2", "lgtm"]
    # The view's picture was redrawn in place (comm updates to its HTML widget).
    updates = [
        m
        for m in kernel.messages
        if m["msg_type"] == "comm_msg"
        and "<svg" in json.dumps(m["content"]["data"].get("state", {}))
    ]
    assert updates and "#a5d6a7" in json.dumps(updates[-1]["content"]["data"])
    # At the end the display itself is updated in place to a static picture: no
    # widget model (a reopened notebook shows it), the DAG, who approved, a timeline.
    kernel.until(
        lambda: any(m["msg_type"] == "update_display_data" for m in kernel.messages), what="final"
    )
    final = [m for m in kernel.messages if m["msg_type"] == "update_display_data"][-1]
    data = final["content"]["data"]
    assert set(data) == {"text/html", "text/plain"}
    assert "completed" in data["text/html"] and "<svg" in data["text/html"]
    assert "wfnb-timeline" in data["text/html"] and "wfnb-legend" in data["text/html"]
    assert "approved by" in data["text/plain"] and "lgtm" in data["text/plain"]
    assert "gated" in data["text/plain"] and "ship" in data["text/plain"]

    # %reload_ext keeps working magics and the engine with its runs.
    seen = len(kernel.messages)
    reply = kernel.run("%reload_ext wfnb\n%workflow show {}".format(kernel.value("_wf_run.id")))
    assert reply.status == "ok", reply.error
    kernel.until(
        lambda: any(
            m["msg_type"] == "update_display_data"
            and "gated" in m["content"]["data"]["text/plain"]
            and "completed" in m["content"]["data"]["text/plain"]
            for m in kernel.messages[seen:]
        ),
        what="the run drawn afresh",
    )


def test_reject_click_fails_the_run_and_cancel_click_cancels(kernel):
    load(kernel)
    assert kernel.run(GATED).status == "ok"
    kernel.until(lambda: kernel.widgets("ButtonModel", description="Reject"), what="Reject")
    kernel.click(kernel.widgets("ButtonModel", description="Reject")[0])
    reply = kernel.run("r = await _wf_run.wait()\nprint(r.status.value, r.failed_step)")
    assert reply.stdout.split() == ["failed", "review"]

    before = len(kernel.widgets("ButtonModel", description="Cancel"))
    long_run = "%%workflow long\nsteps:\n  a: {code: held, with: {gate: never}}\n"
    assert kernel.run(long_run).status == "ok"
    kernel.until(
        lambda: len(kernel.widgets("ButtonModel", description="Cancel")) > before,
        what="the long run's Cancel button",
    )
    kernel.click(kernel.widgets("ButtonModel", description="Cancel")[-1])
    reply = kernel.run("r = await _wf_run.wait()\nprint(r.status.value)")
    assert reply.stdout.strip() == "cancelled"


def test_interrupt_cancels_the_awaited_run_not_the_background_one(kernel):
    load(kernel)
    background = "%%workflow bg -o bg\nsteps:\n  a: {code: held, with: {gate: bg}}\n"
    assert kernel.run(background).status == "ok"
    # Neither run ends by a timer: each step waits for an event only the test sets.
    foreground = "%%workflow fg\nsteps:\n  a: {code: held, with: {gate: never}}\n"
    assert kernel.run(foreground).status == "ok"
    # The callback runs once the cell has handed the loop back: inside the await.
    msg_id = kernel.send(
        "asyncio.get_running_loop().call_soon(lambda: print('awaiting', flush=True))\nawait _wf_run"
    )
    kernel.until(
        lambda: any(
            m["parent_header"].get("msg_id") == msg_id
            and m["msg_type"] == "stream"
            and "awaiting" in m["content"]["text"]
            for m in kernel.messages
        ),
        what="the cell to await the run",
    )
    kernel.km.interrupt_kernel()
    reply = kernel.wait_reply(msg_id, timeout=60)
    assert reply.status == "error"
    kernel.until(lambda: kernel.value("_wf_run.status.value") == "cancelled", what="cancelled")
    assert kernel.value("bg.status.value") == "running"
    reply = kernel.run("gates['bg'].set()\nprint((await bg).status.value)")
    assert reply.stdout.strip() == "completed"
    # The interrupted run is resumable.
    run_id = kernel.value("_wf_run.id")
    reply = kernel.run(f"%workflow resume {run_id}")
    assert reply.status == "ok", reply.error
    kernel.until(
        lambda: kernel.value("_wf_run.id, _wf_run.status.value") == f"{run_id} running",
        what="the resumed run to run again",
    )


def test_definition_error_in_a_kernel_is_short(kernel):
    load(kernel)
    reply = kernel.run("%%workflow bad\nsteps:\n  a: {code: work, needs: [b]}\n")
    assert reply.status == "ok"
    assert "step 'a', line 3" in reply.stderr and "Traceback" not in reply.stderr


def test_wfsql_queries_the_history(kernel):
    load(kernel)
    assert (
        kernel.run(
            "%%workflow q\nsteps:\n  a: {code: work, with: {x: 7}}\n  b: {code: work, needs: [a]}\n"
        ).status
        == "ok"
    )
    assert kernel.run("r = await _wf_run").status == "ok"
    reply = kernel.run(
        "df = %wfsql SELECT status, count(*) AS n FROM steps GROUP BY status\nprint(df.to_dict('records'))"
    )
    assert reply.status == "ok", reply.error
    assert "'completed'" in reply.stdout and "'n': 2" in reply.stdout
    reply = kernel.run("%%wfsql -o runs_df\nSELECT workflow, status FROM runs")
    assert reply.status == "ok", reply.error
    assert kernel.value("runs_df.iloc[0]['status']") == "completed"
    reply = kernel.run("%wfsql DELETE FROM runs")
    assert "read-only" in reply.stderr + reply.error
    assert kernel.value("len(runs_df)") == "1"


TICKER = """
async def tick():
    n = 0
    while True:
        n += 1
        print("tick", n, flush=True)
        await asyncio.sleep(0.05)
ticker = asyncio.ensure_future(tick())
"""


def test_wfsql_waits_for_another_process_while_the_kernel_loop_runs(kernel, tmp_path):
    """DuckDB lets one process at a time open the file. While another process holds
    it, ``%wfsql`` waits for it off the kernel's loop: the tasks there keep running
    (a ticker prints on), and the answer comes once the file is free."""
    load(kernel)
    holder = spawn_child("hold-until-told", tmp_path / ".wfnb" / "wfnb.duckdb")
    try:
        read_line(holder, "held")  # after the kernel's load report let the file go
        assert kernel.run(TICKER).status == "ok"
        msg_id = kernel.send("%wfsql SELECT run_id FROM runs")

        def mine(kind: str) -> list[dict]:
            return [
                m
                for m in kernel.messages
                if m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == kind
            ]

        def ticks_since_the_query_began() -> int:
            # The ticker's prints go under the cell that started it (ipykernel keeps
            # a task's parent): count those after the %wfsql cell's execute_input.
            began = next(
                (i for i, m in enumerate(kernel.messages) if m in mine("execute_input")), None
            )
            if began is None:
                return 0
            return sum(
                m["msg_type"] == "stream" and m["content"]["text"].startswith("tick")
                for m in kernel.messages[began:]
            )

        kernel.until(
            lambda: ticks_since_the_query_began() >= 3,
            timeout=60,
            what="the kernel's loop to tick on while %wfsql waits",
        )
        # ...and the cell is still waiting: the file is not free yet.
        assert not [m for m in mine("status") if m["content"]["execution_state"] == "idle"]
        assert not mine("execute_result") and not mine("error")
        tell(holder)
        reply = kernel.wait_reply(msg_id)
    finally:
        tell(holder)
        holder.wait(timeout=60)
    assert reply.status == "ok", reply.error
    [result] = mine("execute_result")
    assert "child" in result["content"]["data"]["text/plain"], reply.stderr
    assert kernel.run("ticker.cancel()").status == "ok"


def test_a_run_cut_short_by_a_dead_kernel_resumes_in_the_next(kernel_factory):
    first = kernel_factory()
    load(first)
    first.run(
        "%%workflow durable\nsteps:\n  a: {code: work, with: {x: 1}}\n  b: {code: work, needs: [a], with: {x: 2, delay: 600}}\n"
    )
    first.until(
        lambda: first.value("_wf_run.step_statuses.get('b', '')") == "StepStatus.RUNNING",
        what="b running",
    )
    run_id = first.value("_wf_run.id")
    first.km.signal_kernel(signal.SIGKILL)  # a crash: no cleanup, no atexit
    first.until(lambda: not first.km.is_alive(), what="the kernel to die")

    second = kernel_factory()
    reply = second.run(SETUP)
    assert reply.status == "ok", reply.error

    def reports() -> list[str]:
        return [
            m["content"]["data"]["text/plain"]
            for m in second.messages
            if m["msg_type"] == "display_data"
            and run_id in m["content"]["data"].get("text/plain", "")
        ]

    second.until(lambda: reports(), what="the interrupted-runs report")
    [report] = reports()
    assert "1 interrupted run" in report and f"%workflow resume {run_id}" in report
    [resume] = second.widgets("ButtonModel", description="Resume")
    # b sleeps 600 s as written: the resumed run must use a fast `work`.
    second.run("async def work(x=0, delay=0.0):\n    return x")
    second.click(resume)  # as the browser would
    second.until(
        lambda: second.value("globals().get('_wf_run') and _wf_run.id") == run_id,
        what="the Resume click to bind the resumed run",
    )
    reply = second.run("r = await _wf_run\nprint(r.status.value, r.outputs)")
    assert reply.status == "ok", reply.error
    assert reply.stdout.startswith("completed") and "'b': 2" in reply.stdout
    # The history in SQL shows b's two attempts: the one the dead kernel started, and the rerun.
    query = f"SELECT count(*) AS n FROM steps WHERE run_id = '{run_id}' AND step_id = 'b'"
    reply = second.run(f"n = %wfsql {query}\nprint(int(n['n'][0]))")
    assert reply.status == "ok", reply.error
    assert reply.stdout.strip() == "2"
