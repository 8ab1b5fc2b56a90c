"""Real kernels: what a later kernel finds (paused runs with their approvals, the
report again on a second %load_ext), what a shut-down kernel leaves in the store,
--wait for headless runs, and decisions that take effect before the next cell."""

from __future__ import annotations

import pytest

from .conftest import Kernel
from .test_kernel import GATED, load

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(240)]


def displays(kernel: Kernel, needle: str, since: int = 0) -> list[dict]:
    return [
        m["content"]["data"]
        for m in kernel.messages[since:]
        if m["msg_type"] in ("display_data", "update_display_data")
        and needle in m["content"]["data"].get("text/plain", "")
    ]


def test_a_paused_run_of_a_shut_down_kernel_is_reported_and_approved_there(kernel_factory):
    first = kernel_factory()
    load(first)
    assert first.run(GATED).status == "ok"
    first.until(lambda: first.widgets("ButtonModel", description="Approve"), what="pause")
    run_id = first.value("_wf_run.id")
    # A graceful shutdown, as JupyterLab's Kernel › Shut Down sends it.
    first.km.shutdown_kernel(now=False)

    second = kernel_factory()
    load(second)
    second.until(lambda: displays(second, run_id), what="the report")
    [report] = displays(second, run_id)
    assert "1 paused run waiting for approval" in report["text/plain"]
    assert "step review: Ship it?" in report["text/plain"]
    # Approve right there (the engine's offline path resumes the run here).
    [approve] = second.widgets("ButtonModel", description="Approve")
    second.click(approve)
    second.until(
        lambda: second.value("globals().get('_wf_run') and _wf_run.id") == run_id,
        what="the approved run to be bound",
    )
    reply = second.run("r = await _wf_run.wait()\nprint(r.status.value, r.outputs['ship'])")
    assert reply.stdout.split() == ["completed", "2"], reply.stdout + reply.error
    # The report came to rest as static HTML once nothing was left in it.
    second.until(
        lambda: any(
            m["msg_type"] == "update_display_data"
            and "application/vnd.jupyter.widget-view+json" not in m["content"]["data"]
            and run_id in m["content"]["data"].get("text/plain", "")
            for m in second.messages
        ),
        what="a static report",
    )
    # %load_ext a second time shows the report again (no longer stale: one line).
    reply = second.run("%load_ext wfnb")
    assert "already loaded" not in reply.stdout

    def said() -> str:  # printed by the lookup's task, maybe after the cell's reply
        return "".join(
            m["content"]["text"]
            for m in second.messages
            if m["msg_type"] == "stream"
            and m["parent_header"].get("msg_id") == reply.messages[0]["parent_header"]["msg_id"]
        )

    second.until(lambda: "no runs were left unfinished" in said(), what="the report again")


def test_the_last_cell_s_run_is_in_the_store_when_the_kernel_shuts_down(kernel_factory):
    first = kernel_factory()
    load(first)
    msg = first.send("%%workflow last\nsteps:\n  a: {code: work, with: {x: 1, delay: 600}}\n")
    first.wait_reply(msg)
    first.km.shutdown_kernel(now=False)  # what papermill and nbconvert do next

    second = kernel_factory()
    load(second)
    second.until(lambda: displays(second, "interrupted"), what="the report")
    [report] = displays(second, "interrupted")
    assert "last" in report["text/plain"] and "1 interrupted run" in report["text/plain"]


def test_wait_blocks_a_headless_cell_until_the_run_ends(kernel):
    load(kernel)
    reply = kernel.run("%%workflow w --wait\nsteps:\n  a: {code: work, with: {x: 5, delay: 0.3}}\n")
    assert reply.status == "ok", reply.error
    results = [m for m in reply.messages if m["msg_type"] == "execute_result"]
    assert results and "completed" in results[0]["content"]["data"]["text/plain"]
    assert kernel.value("_wf_run.status.value") == "completed"


def test_a_click_then_await_never_returns_the_stale_pause(kernel):
    load(kernel)
    assert kernel.run(GATED).status == "ok"
    kernel.until(lambda: kernel.widgets("ButtonModel", description="Approve"), what="pause")
    [approve] = kernel.widgets("ButtonModel", description="Approve")
    # The click and the next cell back to back, as "Run all" after a click would.
    kernel.click(approve)
    reply = kernel.run("r = await _wf_run\nprint(r.status.value)")
    assert reply.stdout.strip() == "completed", reply.stdout + reply.error


def test_wfsql_suggests_only_our_tables_and_runs_table_reads_as_text(kernel):
    load(kernel)
    reply = kernel.run("%wfsql SELECT * FROM nosuchtable")
    assert "pg_enum" not in reply.stderr and "(tables: workflows, runs" in reply.stderr
    kernel.run("%%workflow t\nsteps:\n  a: {code: work}\n")
    kernel.run("await _wf_run")
    reply = kernel.run("%workflow runs")
    [shown] = [m for m in reply.messages if m["msg_type"] == "display_data"]
    plain = shown["content"]["data"]["text/plain"]
    assert plain.splitlines()[0].split() == [
        "run",
        "workflow",
        "status",
        "created",
        "took",
        "error",
    ]
    assert "completed" in plain


def test_timeline_diff_and_rerun_name_what_changed(kernel):
    load(kernel)
    kernel.run("def f(x):\n    return x\n")
    kernel.run(
        "%%workflow d\nsteps:\n  a: {code: f, with: {x: 1}}\n  b: {code: f, needs: [a], with: {x: 2}}\n"
    )
    kernel.run("first = await _wf_run")
    kernel.run("def f(x):\n    return x * 10\n")
    seen = len(kernel.messages)
    kernel.run("%workflow rerun {} --from b".format(kernel.value("first.run_id")))
    kernel.until(lambda: displays(kernel, "code changed since run", seen), what="changed steps")
    [changed] = displays(kernel, "code changed since run", seen)
    assert "a" in changed["text/plain"].split(": ")[-1] and "b" in changed["text/plain"]
    kernel.run("second = await _wf_run")
    seen = len(kernel.messages)
    kernel.run(
        "%workflow diff {} {}".format(kernel.value("first.run_id"), kernel.value("second.run_id"))
    )
    kernel.until(lambda: displays(kernel, "attempts_a", seen), what="the diff")
    [diff] = displays(kernel, "attempts_a", seen)
    lines = diff["text/plain"].splitlines()
    assert any(line.split()[0] == "a" and line.split()[-1] == "same" for line in lines[1:])
    assert any(line.split()[0] == "b" and line.split()[-1] == "differs" for line in lines[1:])
    seen = len(kernel.messages)
    kernel.run("%workflow timeline {}".format(kernel.value("second.run_id")))
    kernel.until(lambda: displays(kernel, "attempt", seen), what="the timeline")
    [timeline] = displays(kernel, "attempt", seen)
    assert "<svg" in timeline["text/html"] and "b" in timeline["text/plain"]


def test_the_run_is_in_the_store_before_the_workflow_cell_returns(kernel_factory, tmp_path):
    """SIGKILL the instant the cell's reply arrives: the next kernel finds the run.
    The store is held by another process while the cell runs, so a cell that
    returned before its run's record was written would return first, and lose it."""
    import queue
    import signal

    import duckdb

    first = kernel_factory()
    load(first)
    db = tmp_path / ".wfnb" / "wfnb.duckdb"
    first.until(lambda: db.exists(), what="the store file")
    holder = None
    while holder is None:  # the kernel closes the file once idle (its load report)
        try:
            holder = duckdb.connect(str(db))
        except duckdb.Error:
            first.drain(0.1)
    msg = first.send("%%workflow sudden\nsteps:\n  a: {code: work, with: {x: 1, delay: 600}}\n")
    try:
        reply = first.wait_reply(msg, timeout=2)  # returned while the store was held?
    except queue.Empty:
        holder.close()
        holder = None
        reply = first.wait_reply(msg)
    first.km.signal_kernel(signal.SIGKILL)
    if holder is not None:
        holder.close()
    assert reply.status == "ok", reply.error
    first.until(lambda: not first.km.is_alive(), what="the kernel to die")

    second = kernel_factory()
    load(second)
    second.until(lambda: displays(second, "interrupted"), what="the report")
    [report] = displays(second, "interrupted")
    assert "sudden" in report["text/plain"] and "1 interrupted run" in report["text/plain"]
    assert "%workflow resume" in report["text/plain"]
