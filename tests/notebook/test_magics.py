"""The magics in a real IPython shell, with cells run on a running loop as
ipykernel runs them: option parsing, definition errors, binding, reprs, reload."""

from __future__ import annotations

import asyncio

import pytest

import wfnb
from wfnb.model import RunStatus, StepStatus
from wfnb.notebook.commands import parse_age
from wfnb.notebook.runs import NotebookRun

from ..conftest import arun
from .conftest import Shell

FUNCS = """
import asyncio
import importlib.util
async def work(x=0, delay=0.0):
    await asyncio.sleep(delay)
    return x
gates = {}
async def held(x=0, gate="go"):
    # waits until the test lets it go, without a timer
    await gates.setdefault(gate, asyncio.Event()).wait()
    return x
"""


def open_gate(shell: Shell, gate: str = "go") -> None:
    shell.ns["gates"].setdefault(gate, asyncio.Event()).set()


async def loaded(shell: Shell) -> None:
    cell = await shell.run("%load_ext wfnb")
    assert cell.error is None, cell.stderr
    assert (await shell.run(FUNCS)).error is None


def test_cell_magic_returns_before_the_run_ends_and_binds_the_run(shell):
    async def go():
        await loaded(shell)
        cell = await shell.run(
            "%%workflow slow --timeout 30 --concurrency 2 --schedule eager -o mine\n"
            "steps:\n"
            "  a: {code: held, with: {x: 1}}\n"
            "  b: {code: work, needs: [a], with: {x: '{{ steps.a.output + 1 }}'}}\n"
        )
        assert cell.error is None and cell.result is None, cell.stderr
        run = shell.ns["_wf_run"]
        assert isinstance(run, NotebookRun) and shell.ns["mine"] is run
        assert not run.status.finished, "the cell must return while the run goes on"
        open_gate(shell)
        result = (await shell.run("await _wf_run")).result
        assert result.status is RunStatus.COMPLETED and result.outputs["b"] == 2
        wf = run.engine.workflows["slow"]
        assert (wf.timeout, wf.concurrency, wf.schedule) == (30, 2, "eager")

    arun(go())


def test_inputs_expression_with_spaces_braces_and_dollars(shell):
    async def go():
        await loaded(shell)
        shell.ns["base"] = 40
        cell = await shell.run(
            "%%workflow calc --inputs {'n': base + 2, 'tag': '$x {y}'}\n"
            "steps:\n  a: {code: work, with: {x: '{{ inputs.n }}'}}\n"
        )
        assert cell.error is None, cell.stderr
        result = await shell.ns["_wf_run"]
        assert result.outputs["a"] == 42
        assert shell.ns["_wf_run"].engine.store  # the run went through the store

    arun(go())


def test_definition_errors_are_one_short_message_naming_step_and_line(shell):
    async def go():
        await loaded(shell)
        cell = await shell.run(
            "%%workflow broken\nsteps:\n  a: {code: work}\n  b: {code: work, needs: [aa]}\n"
        )
        assert cell.error is None
        assert "step 'b', line 4" in cell.stderr and "'aa'" in cell.stderr
        assert "did you mean 'a'" in cell.stderr
        assert "b: {code: work, needs: [aa]}" in cell.stderr
        assert "Traceback" not in cell.stderr + cell.stdout
        assert "_wf_run" not in shell.ns
        cell = await shell.run("%%workflow nofunc\nsteps:\n  a: {code: wrok}\n")
        assert "step 'a', line 3" in cell.stderr and "did you mean 'work'" in cell.stderr
        cell = await shell.run("%%workflow yaml\nsteps:\n  a: {code: work\n")
        assert "line" in cell.stderr and "Traceback" not in cell.stderr

    arun(go())


def test_no_run_registers_and_draws_without_running(shell):
    async def go():
        await loaded(shell)
        cell = await shell.run("%%workflow later --no-run\nsteps:\n  a: {code: not_defined_yet}\n")
        assert cell.error is None and "registered workflow later (1 steps)" in cell.text
        assert "_wf_run" not in shell.ns
        listed = await shell.run("%workflow list")
        assert "later" in listed.text
        graph = await shell.run("%workflow graph later")
        assert "1 steps" in graph.text

    arun(go())


def test_approve_from_the_line_magic_keeps_braces_and_dollars(shell):
    async def go():
        await loaded(shell)
        await shell.run(
            "%%workflow gate\nsteps:\n  ok: {approval: {prompt: 'go?'}}\n"
            "  after: {code: work, needs: [ok], with: {x: 5}}\n"
        )
        run = shell.ns["_wf_run"]
        paused = await run
        assert paused.status is RunStatus.PAUSED
        cell = await shell.run(f'%workflow approve {run.id} ok --comment "{{x}} $y"')
        assert cell.error is None, cell.stderr
        result = await run.wait()
        assert result.status is RunStatus.COMPLETED
        assert result.outputs["ok"]["comment"] == "{x} $y"

    arun(go())


def test_awaiting_cell_cancelled_means_run_cancelled_background_run_untouched(shell):
    """What a kernel interrupt does (ipykernel cancels the awaiting cell's coroutine)."""

    async def go():
        await loaded(shell)
        for name in ("awaited", "background"):
            await shell.run(
                f"%%workflow {name} -o {name}\nsteps:\n  a: {{code: held, with: {{gate: {name}}}}}\n"
            )
        awaited = shell.ns["awaited"]
        waiter = asyncio.ensure_future(awaited._await("settled"))
        await asyncio.sleep(0)  # the waiter's first turn: it is inside its await now
        while awaited.step_statuses.get("a") is not StepStatus.RUNNING:
            await asyncio.sleep(0.01)  # the run's step waits for its gate
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        done = await awaited.wait()
        assert done.status is RunStatus.CANCELLED
        open_gate(shell, "background")
        assert (await shell.ns["background"]).status is RunStatus.COMPLETED
        open_gate(shell, "awaited")
        resumed = await shell.run(f"%workflow resume {awaited.id}")
        assert resumed.error is None
        assert (await shell.ns["_wf_run"]).status is RunStatus.COMPLETED

    arun(go())


def test_rich_repr_of_runs_and_results(shell):
    async def go():
        await loaded(shell)
        await shell.run("%%workflow shown\nsteps:\n  a: {code: work}\n")
        result = await shell.ns["_wf_run"]
        formatter = shell.ip.display_formatter
        for obj in (shell.ns["_wf_run"], shell.ns["_wf_run"].handle, result):
            html = formatter.format(obj)[0]["text/html"]
            assert "shown" in html and "completed" in html and "1/1 steps" in html

    arun(go())


def test_subcommand_errors_are_usage_errors(shell):
    async def go():
        await loaded(shell)
        cell = await shell.run("%workflow frobnicate")
        assert cell.error is not None and "unknown %workflow command" in str(cell.error)
        cell = await shell.run("%workflow prune --older-than soon")
        assert cell.error is not None and "cannot read age" in str(cell.error)
        cell = await shell.run("%workflow approve onlyrun")
        assert cell.error is not None

    arun(go())


def test_reload_keeps_the_engine_and_its_live_runs(shell):
    async def go():
        await loaded(shell)
        await shell.run("%%workflow long\nsteps:\n  a: {code: work, with: {delay: 0.3}}\n")
        run = shell.ns["_wf_run"]
        engine = run.engine
        assert (await shell.run("%reload_ext wfnb")).error is None
        assert "workflow" in shell.ip.magics_manager.magics["cell"]
        assert shell.ip.magics_manager.magics["line"]["workflow"].__self__.engine is engine
        assert (await run).status is RunStatus.COMPLETED
        assert (await shell.run("%unload_ext wfnb")).error is None
        assert "workflow" not in shell.ip.magics_manager.magics["cell"]
        assert "wfsql" not in shell.ip.magics_manager.magics["line"]

    arun(go())


def test_config_db_is_a_traitlets_setting(shell, tmp_path):
    async def go():
        await loaded(shell)
        await shell.run("%%workflow before\nsteps:\n  a: {code: work}\n")
        await shell.ns["_wf_run"]
        magics = shell.ip.magics_manager.magics["line"]["workflow"].__self__
        first = magics.engine
        cell = await shell.run(f"%config Wfnb.db = {str(tmp_path / 'x.duckdb')!r}")
        assert cell.error is None, cell.stderr
        assert magics.session.settings.db.endswith("x.duckdb")
        assert magics.engine is not first, "no live run: the next run uses the new file"
        assert magics.engine.store.path == tmp_path / "x.duckdb"

    arun(go())


def test_a_setting_changed_while_a_run_is_live_is_used_by_the_first_run_after_it(shell, tmp_path):
    """The live run keeps its engine; the first use after it ends makes a new one
    from the new setting, without the setting being made again (traitlets says
    nothing when a value is set to what it already is)."""

    async def go():
        await loaded(shell)
        await shell.run("%%workflow live\nsteps:\n  a: {code: held}\n")
        run = shell.ns["_wf_run"]
        magics = shell.ip.magics_manager.magics["line"]["workflow"].__self__
        first = magics.engine
        cell = await shell.run(f"%config Wfnb.db = {str(tmp_path / 'later.duckdb')!r}")
        assert "used by the first run after they end" in cell.stderr
        assert magics.engine is first
        open_gate(shell)
        assert (await run).status is RunStatus.COMPLETED
        assert magics.engine is not first
        assert magics.engine.store.path == tmp_path / "later.duckdb"

    arun(go())


def test_a_setting_changed_while_a_run_is_starting_waits_for_that_run(shell, tmp_path):
    """A run whose start is under way is not live yet, but its engine is in use:
    it is kept until the run ends (found by review: it was closed under the run)."""

    async def go():
        await loaded(shell)
        session = shell.ip.magics_manager.magics["line"]["workflow"].__self__.session
        first = session.engine
        workflow = wfnb.Workflow.from_yaml("steps:\n  a: {code: held}\n", name="starting")
        run = session.start(first.start(workflow), "starting")
        session.settings.db = str(tmp_path / "later.duckdb")  # in the same turn of the loop
        assert session.started_engine is first
        await run.started
        open_gate(shell)
        assert (await run).status is RunStatus.COMPLETED
        assert session.engine is not first
        # An engine set by hand is the one used, whatever was outdated before.
        session.settings.db = str(tmp_path / "again.duckdb")
        mine = session.engine = wfnb.Engine()
        assert session.engine is mine
        await mine.close()

    arun(go())


def test_config_backend_runs_the_steps_on_a_dask_scheduler(shell, dask_cluster):
    address = dask_cluster.scheduler_address

    async def go():
        await loaded(shell)
        magics = shell.ip.magics_manager.magics["line"]["workflow"].__self__
        await shell.run('%config Wfnb.backend = "cluster-7"')  # refused (%config logs why)
        assert magics.session.settings.backend == "local"
        assert isinstance(magics.engine.backend, wfnb.LocalBackend)
        assert (await shell.run(f"%config Wfnb.backend = {address!r}")).error is None
        engine = magics.engine
        assert isinstance(engine.backend, wfnb.DaskBackend)
        await shell.run("%%workflow remote\nsteps:\n  a: {code: work, with: {x: 7}}\n")
        result = await shell.ns["_wf_run"]
        assert result.status is RunStatus.COMPLETED and result.outputs == {"a": 7}
        (step,) = await engine.store.get_steps(run_id=result.run_id)
        workers = dask_cluster.scheduler_info["workers"]
        assert step.worker in workers
        assert engine.backend.dashboard_link.startswith("http://")
        await engine.close()

    arun(go())


def test_a_backend_setting_that_names_nothing_is_refused_clearly():
    from traitlets import TraitError

    from wfnb.notebook.config import Wfnb

    with pytest.raises(TraitError, match='"local", "dask" or a scheduler address'):
        Wfnb(backend="cluster-7")


def test_config_backend_dask_starts_a_local_cluster_only_when_a_step_runs(shell):
    async def go():
        await loaded(shell)
        assert (await shell.run('%config Wfnb.backend = "dask"')).error is None
        backend = shell.ip.magics_manager.magics["line"]["workflow"].__self__.engine.backend
        assert isinstance(backend, wfnb.DaskBackend) and backend.client is None

    arun(go())


def test_config_dask_cluster_sizes_the_cluster_the_kernel_starts(shell):
    """``Wfnb.dask_cluster`` is what the LocalCluster of ``"dask"`` is started
    with: here one worker process of one thread, which ran the step."""

    async def go():
        await loaded(shell)
        options = '{"n_workers": 1, "threads_per_worker": 1, "dashboard_address": ":0"}'
        assert (await shell.run(f"%config Wfnb.dask_cluster = {options}")).error is None
        assert (await shell.run('%config Wfnb.backend = "dask"')).error is None
        engine = shell.ip.magics_manager.magics["line"]["workflow"].__self__.engine
        await shell.run("%%workflow sized\nsteps:\n  a: {code: work, with: {x: 3}}\n")
        result = await shell.ns["_wf_run"]
        assert result.status is RunStatus.COMPLETED and result.outputs == {"a": 3}
        threads = await engine.backend.client.nthreads()  # worker address -> threads
        assert list(threads.values()) == [1]
        (step,) = await engine.store.get_steps(run_id=result.run_id)
        assert step.worker in threads
        await engine.close()

    arun(go())


def test_dask_cluster_options_are_named_and_said_unused_without_a_cluster_to_start(capsys):
    from traitlets import TraitError

    from wfnb.notebook.config import Wfnb, make_backend

    with pytest.raises(TraitError, match="by name, not 4"):
        Wfnb(dask_cluster={4: "workers"})
    for wrong in ({"n_workers": 0}, {"threads_per_worker": "2"}):  # 0 workers: a run never ends
        with pytest.raises(TraitError, match="whole number >= 1"):
            Wfnb(dask_cluster=wrong)
    with pytest.raises(TraitError, match="asynchronous"):
        Wfnb(dask_cluster={"asynchronous": True})
    backend = make_backend("tcp://127.0.0.1:8786", {"n_workers": 4})
    assert isinstance(backend, wfnb.DaskBackend) and backend.client is None
    assert "Wfnb.dask_cluster" in capsys.readouterr().err
    assert isinstance(make_backend("local", {}), wfnb.LocalBackend)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("12h", 43200), ("7d", 604800), ("5", 5)]
)
def test_ages(text, seconds):
    assert parse_age(text) == seconds


def test_runs_show_cancel_and_prune_from_the_line_magic(shell):
    async def go():
        await loaded(shell)
        await shell.run("%%workflow quick\nsteps:\n  a: {code: work, with: {x: 1}}\n")
        done = shell.ns["_wf_run"]
        await done
        await shell.run("%%workflow hang\nsteps:\n  a: {code: work, with: {delay: 60}}\n")
        hang = shell.ns["_wf_run"]
        await hang.started
        # The cell waits for the task the magic started, whose result updates its display.
        wait = (
            "\nimport asyncio\ntasks = "
            "get_ipython().magics_manager.registry['WorkflowMagics'].session.tasks"
            "\nif tasks:\n    await asyncio.wait(tasks)"
        )
        cancelled = await shell.run(f"%workflow cancel {hang.id}{wait}")
        assert f"{hang.id}: cancelled" in cancelled.text
        runs = await shell.run(f"%workflow runs{wait}")
        assert done.id in runs.text and hang.id in runs.text and "cancelled" in runs.text
        only = await shell.run(f"%workflow runs quick{wait}")
        assert done.id in only.text and hang.id not in only.text
        shown = await shell.run(f"%workflow show {done.id}{wait}")
        assert f"quick {done.id}: completed" in shown.text
        missing = await shell.run(f"%workflow show nosuchrun{wait}")
        assert "RunNotFound" in missing.text
        pruned = await shell.run(f"%workflow prune --older-than 0s{wait}")
        assert "pruned 2 runs" in pruned.text

    arun(go())


def test_show_run_step_prints_every_attempt_with_its_traceback(shell):
    async def go():
        await loaded(shell)
        code = "def broken():\n    raise ValueError('nope')\n"
        assert (await shell.run(code)).error is None
        await shell.run(
            "%%workflow flaky\nsteps:\n  b: {code: broken, retry: {max_attempts: 2, delay: 0}}\n"
        )
        run = shell.ns["_wf_run"]
        await run
        wait = (
            "\nimport asyncio\ntasks = "
            "get_ipython().magics_manager.registry['WorkflowMagics'].session.tasks"
            "\nif tasks:\n    await asyncio.wait(tasks)"
        )
        shown = await shell.run(f"%workflow show {run.id} b{wait}")
        assert "attempt 1: failed" in shown.text and "attempt 2: failed" in shown.text
        assert "raise ValueError('nope')" in shown.text
        missing = await shell.run(f"%workflow show {run.id} nosuchstep{wait}")
        assert "UnknownStepError" in missing.text

    arun(go())


def test_rerun_from_a_step_reuses_what_is_upstream(shell):
    async def go():
        await loaded(shell)
        await shell.run("calls = []\ndef note(name):\n    calls.append(name)\n    return name\n")
        await shell.run(
            "%%workflow edit\nsteps:\n  a: {code: note, with: {name: a}}\n"
            "  b: {code: note, needs: [a], with: {name: b}}\n"
            "  c: {code: note, needs: [b], with: {name: c}}\n"
        )
        first = await shell.ns["_wf_run"]
        cell = await shell.run(f"%workflow rerun {first.run_id} --from b")
        assert cell.error is None, cell.stderr
        second = await shell.ns["_wf_run"]
        assert second.status is RunStatus.COMPLETED and second.outputs["a"] == "a"
        assert shell.ns["calls"] == ["a", "b", "c", "b", "c"]

    arun(go())


def test_wfsql_line_and_cell_forms_bind_dataframes(shell):
    async def go():
        await loaded(shell)
        await shell.run("%%workflow sq\nsteps:\n  a: {code: work, with: {x: 3}}\n")
        await shell.ns["_wf_run"]
        line = await shell.run(
            "%wfsql -o n SELECT count(*) AS n FROM runs WHERE status = 'completed'"
        )
        assert line.error is None, line.stderr
        assert int(shell.ns["n"]["n"][0]) == 1
        cell = await shell.run("%%wfsql steps_df\nSELECT step_id, status FROM steps")
        assert cell.error is None, cell.stderr
        assert shell.ns["steps_df"].to_dict("records") == [{"step_id": "a", "status": "completed"}]
        refused = await shell.run("%wfsql DROP TABLE runs")
        assert "read-only" in refused.stderr
        await shell.ns["_wf_run"].engine.close()

    arun(go())


def test_wfsql_waits_for_a_held_file_off_the_loop_and_then_names_the_holder(shell, tmp_path):
    """Another process holds the file: while ``%wfsql`` waits for it the loop runs
    on (a task there, seeing the query pending, lets the holder go; on a blocked
    loop it never could); a wait that times out says StoreLocked, the file, the pid."""
    from tests.store._procs import read_line, spawn_child, tell
    from wfnb.engine import Engine
    from wfnb.store.duckdb import DuckDBStore

    db = tmp_path / "held.duckdb"
    holder = spawn_child("hold-until-told", db)
    try:
        pid = read_line(holder, "held").split()[1]

        async def go():
            await loaded(shell)
            session = shell.ip.magics_manager.registry["WorkflowMagics"].session
            session.engine = Engine(store=DuckDBStore(db, lock_timeout=0.5), namespace=shell.ns)
            refused = await shell.run("df = %wfsql SELECT count(*) AS n FROM runs")
            await session.engine.close()

            store = DuckDBStore(db, lock_timeout=60)
            session.engine = Engine(store=store, namespace=shell.ns)
            pending = []
            query = store.query

            async def watched(sql: str):
                pending.append(sql)
                try:
                    return await query(sql)
                finally:
                    pending.clear()

            store.query = watched  # type: ignore[method-assign]

            async def let_go_while_it_waits() -> None:
                while not pending:
                    await asyncio.sleep(0.01)
                tell(holder)

            helper = asyncio.ensure_future(let_go_while_it_waits())
            answered = await shell.run("df = %wfsql SELECT count(*) AS n FROM runs")
            helper.cancel()
            await session.engine.close()
            return refused, answered

        refused, answered = arun(go())
        assert refused.error is None
        assert refused.stderr.startswith("%wfsql: StoreLocked: the store "), refused.stderr
        assert str(db) in refused.stderr and f"pid {pid}" in refused.stderr
        assert answered.error is None and answered.stderr == "", answered.stderr
        assert int(shell.ns["df"]["n"][0]) == 1  # the holder's run
    finally:
        tell(holder)
        holder.wait(timeout=60)


def test_wfsql_is_awaited_wherever_the_cell_can_await():
    """Top-level ``%wfsql`` lines and ``%%wfsql`` cells await the query (the loop
    runs on while it waits for the file); inside a function they cannot."""
    from IPython.core.inputtransformer2 import TransformerManager

    from wfnb.notebook.extension import await_sql

    cells = TransformerManager()
    awaited = "(await get_ipython().magics_manager.registry['WorkflowMagics'].wfsql_async("
    line = await_sql(cells.transform_cell("x = 1\ndf = %wfsql SELECT 'é' AS a\nprint(df)"))
    assert line == f"x = 1\ndf = {awaited}\"SELECT 'é' AS a\"))\nprint(df)\n"
    cell = await_sql(cells.transform_cell("%%wfsql -o d\nSELECT 1\n"))
    assert cell == f"{awaited}'-o d', 'SELECT 1\\n'))\n"
    inside = cells.transform_cell("def f():\n    return 1\n    %wfsql SELECT 2\n")
    assert await_sql(inside) == inside


@pytest.mark.parametrize(
    ("line", "options", "expression"),
    [
        ("etl --timeout 5", "etl --timeout 5", None),
        ("etl --inputs {'a': 1, 'b': [1, 2]}", "etl ", "{'a': 1, 'b': [1, 2]}"),
        ("etl -o r --inputs dict(n=base + 1)", "etl -o r ", "dict(n=base + 1)"),
        ("etl --inputs \"{'a': 1}\" -o r", "etl --inputs \"{'a': 1}\" -o r", None),
    ],
)
def test_inputs_is_the_rest_of_the_line_unless_quoted(line, options, expression):
    from wfnb.notebook.commands import split_inputs

    assert split_inputs(line) == (options, expression)


def test_quoted_inputs_followed_by_options(shell):
    async def go():
        await loaded(shell)
        cell = await shell.run(
            "%%workflow q --inputs \"{'n': 4}\" -o mine\nsteps:\n  a: {code: work, with: {x: '{{ inputs.n }}'}}\n"
        )
        assert cell.error is None, cell.stderr
        assert (await shell.ns["mine"]).outputs["a"] == 4

    arun(go())


def test_load_reports_interrupted_runs_and_resume_button_resumes(shell):
    """A run whose driver died (its owner is a process that no longer exists) is
    reported with the command and a Resume button; the click resumes it."""
    import socket
    import time

    import ipywidgets as w

    from wfnb.engine import Engine
    from wfnb.store.base import Batch, RunRecord, StepRecord, WorkflowRecord
    from wfnb.store.memory import MemoryStore

    async def go():
        await loaded(shell)
        workflow = wfnb.Workflow.from_yaml(
            "steps:\n  a: {code: work, with: {x: 1}}\n  b: {code: work, needs: [a], with: {x: 2}}\n",
            name="crashed",
        )
        now = time.time()
        dead = f"{socket.gethostname()}:999999999:0"
        store = MemoryStore()
        await store.write(
            Batch(
                workflows=(
                    WorkflowRecord("crashed", workflow.to_yaml(), workflow.definition_hash, now),
                ),
                runs=(
                    RunRecord(
                        "deadbeef0001",
                        "crashed",
                        workflow.definition_hash,
                        RunStatus.RUNNING,
                        {},
                        now,
                        started_at=now,
                        owner=dead,
                    ),
                ),
                steps=(
                    StepRecord(
                        "deadbeef0001",
                        "a",
                        1,
                        StepStatus.COMPLETED,
                        now,
                        now,
                        output=1,
                        has_output=True,
                    ),
                    StepRecord("deadbeef0001", "b", 1, StepStatus.RUNNING, now),
                ),
            )
        )
        magics = shell.ip.magics_manager.magics["line"]["workflow"].__self__
        magics.session.engine = Engine(store=store, namespace=shell.ns)
        from IPython.utils.capture import capture_output

        with capture_output() as captured:
            report = await magics.session.report()
        [shown] = [o.data for o in captured.outputs if "interrupted" in o.data["text/plain"]]
        assert "1 interrupted run" in shown["text/plain"]
        assert "`%workflow resume deadbeef0001`" in shown["text/plain"]
        assert shown["application/vnd.jupyter.widget-view+json"]["model_id"] == report.box.model_id
        row = report.rows["deadbeef0001"]
        [resume] = [b for b in row.children[0].children if b.description == "Resume"]
        resume.click()
        for _ in range(100):
            await asyncio.sleep(0.02)
            if "_wf_run" in shell.ns:
                break
        run = shell.ns["_wf_run"]
        result = await run
        assert result.status is RunStatus.COMPLETED and result.outputs == {"a": 1, "b": 2}
        # The live view joins the row; when the run ends, its final picture replaces it
        # (a loaded machine may show either by now), and that picture comes.
        assert any(isinstance(c, w.VBox) for c in row.children) or len(row.children) == 1
        for _ in range(500):
            if len(row.children) == 1 and isinstance(row.children[0], w.HTML):
                break
            await asyncio.sleep(0.02)
        assert "completed" in row.children[0].value

    arun(go())


def test_the_cell_returns_once_the_run_is_recorded_and_wait_needs_an_awaiting_cell(shell):
    async def go():
        await loaded(shell)
        cell = await shell.run("%%workflow rec\nsteps:\n  a: {code: work, with: {delay: 0.3}}\n")
        assert cell.error is None, cell.stderr
        run = shell.ns["_wf_run"]
        assert run.started.done() and run.id is not None  # recorded, not just scheduled
        assert await run.engine.store.get_run(run_id=run.id) is not None
        # run_cell_magic called from code: the cell cannot await, so no --wait.
        cell = await shell.run(
            "r = get_ipython().run_cell_magic('workflow', 'rec2 --wait', 'steps:\\n  a: {code: work}\\n')"
        )
        assert "autoawait" in str(cell.error)
        assert shell.ns["_wf_run"] is run, "nothing started"
        await run

    arun(go())


def test_a_run_argument_can_name_a_variable_bound_to_a_run(shell):
    """`@no_var_expand` keeps `{run.id}` out of magic lines: `_wf_run` (or any name
    bound to a run or a result) stands for the run's id."""

    async def go():
        await loaded(shell)
        cell = await shell.run(
            "%%workflow gate\nsteps:\n  review: {approval: {prompt: Ship it}}\n"
            "  after: {code: work, needs: [review], with: {x: 3}}\n"
        )
        assert cell.error is None and not cell.stderr, cell.stderr
        assert (await shell.run("paused = await _wf_run")).error is None
        cell = await shell.run('%workflow approve _wf_run review --comment "fine by me"')
        assert cell.error is None, cell.stderr
        assert "approved review of " + shell.ns["_wf_run"].id in cell.text
        done = (await shell.run("await _wf_run.wait()")).result
        assert done.status is RunStatus.COMPLETED
        assert done.outputs["review"]["comment"] == "fine by me"
        shown = await shell.run("%workflow show paused")  # a RunResult's name
        assert f"gate {done.run_id}: completed" in shown.text
        missing = await shell.run("%workflow show no_such_name")
        assert "no run 'no_such_name'" in missing.text

    arun(go())
