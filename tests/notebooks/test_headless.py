"""Notebooks run without a person: papermill and ``jupyter nbconvert --execute``.

What a user tried: papermill ran a notebook whose last cell is a ``%%workflow``
(nothing awaited after it); it exited 0 and the store held no run at all. So here
the workflows are checked in the store, not in the executed notebook: with
``--wait`` the cell returns once the run has ended; without it, the run's record is
durable before the cell returns, and a run cut off by the kernel's shutdown is left
resumable.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from wfnb import Engine, RunStatus

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(180)]

SETUP = '%config Wfnb.db = "runs.duckdb"\n%load_ext wfnb'
STEPS = """\
import asyncio


def double(x):
    return 2 * x


async def slow(x):
    await asyncio.sleep(SLOW)
    return x + 1


SLOW = {slow}
"""
WORKFLOW = """\
%%workflow headless {options}
steps:
  a: {{code: double, with: {{x: 1}}}}
  b: {{code: double, with: {{x: 2}}}}
  c: {{code: slow, needs: [a, b], with: {{x: "{{{{ steps.a.output + steps.b.output }}}}"}}}}
"""


def notebook(path: Path, *, options: str, slow: float) -> Path:
    """A notebook whose last cell is the ``%%workflow`` (nothing awaits the run)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [
        nbformat.v4.new_code_cell(SETUP),
        nbformat.v4.new_code_cell(STEPS.format(slow=slow)),
        nbformat.v4.new_code_cell(WORKFLOW.format(options=options)),
    ]
    nbformat.write(nb, path)
    return path


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The kernel imports this checkout's wfnb and has no store of its own set."""
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    )
    monkeypatch.delenv("WFNB_DB", raising=False)
    return dict(os.environ)


def stored(db: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str, str | None]]]:
    """(workflow, status) of every run; (step, status, output) of every last attempt."""
    from wfnb.store.duckdb import DuckDBStore, sql

    store = DuckDBStore(db)
    runs = sql("SELECT workflow, status FROM runs ORDER BY created_at", store=store)
    steps = sql("SELECT step_id, status, output FROM latest_steps ORDER BY step_id", store=store)
    asyncio.run(store.close())
    return (
        list(runs.itertuples(index=False, name=None)),
        list(steps.itertuples(index=False, name=None)),
    )


def run_with_papermill(source: Path) -> None:
    import papermill

    papermill.execute_notebook(
        str(source),
        str(source.with_name("out.ipynb")),
        cwd=str(source.parent),
        kernel_name="python3",
        progress_bar=False,
    )


COMPLETED = (
    [("headless", "completed")],
    [("a", "completed", "2"), ("b", "completed", "4"), ("c", "completed", "7")],
)


def test_papermill_with_wait_leaves_a_completed_run(tmp_path: Path, env: dict[str, str]):
    source = notebook(tmp_path / "headless.ipynb", options="--wait", slow=0.5)
    run_with_papermill(source)
    assert stored(tmp_path / "runs.duckdb") == COMPLETED


def test_nbconvert_execute_with_wait_leaves_a_completed_run(tmp_path: Path, env: dict[str, str]):
    source = notebook(tmp_path / "headless.ipynb", options="--wait", slow=0.5)
    done = subprocess.run(
        [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
         "--output", "out.ipynb", source.name],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=170,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert stored(tmp_path / "runs.duckdb") == COMPLETED


def test_without_wait_the_run_is_recorded_and_resumable_after_the_kernel_went(
    tmp_path: Path, env: dict[str, str]
):
    """The kernel is shut down while ``c`` sleeps: the run must still be in the
    store, not completed, and another process must be able to finish it."""
    source = notebook(tmp_path / "headless.ipynb", options="", slow=3600)
    run_with_papermill(source)
    runs, _steps = stored(tmp_path / "runs.duckdb")
    assert len(runs) == 1 and runs[0][0] == "headless", runs
    assert runs[0][1] != "completed", runs

    namespace: dict[str, object] = {}
    exec(STEPS.format(slow=0), namespace)  # the same steps, with no sleep this time

    async def resume() -> RunStatus:
        from wfnb.store.duckdb import DuckDBStore, sql

        store = DuckDBStore(tmp_path / "runs.duckdb")
        engine = Engine(store=store, namespace=namespace)
        [run_id] = sql("SELECT run_id FROM runs", store=store).run_id
        try:
            handle = await engine.resume(run_id)
            return (await handle.wait()).status
        finally:
            await engine.close()

    assert asyncio.run(resume()) is RunStatus.COMPLETED
    assert stored(tmp_path / "runs.duckdb") == COMPLETED
