"""The approvals notebook (notebooks/02-approvals.ipynb) runs top to bottom in a real kernel, and what it saves
shows the run's result without any widget state (the HTML repr)."""

from __future__ import annotations

import os
from pathlib import Path

import nbclient
import nbformat
import pytest

from .conftest import REPO

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(120)]


def test_example_notebook_runs_and_saves_its_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    notebook = nbformat.read(REPO / "notebooks" / "02-approvals.ipynb", as_version=4)
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    )
    monkeypatch.delenv("WFNB_DB", raising=False)
    client = nbclient.NotebookClient(
        notebook, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outputs = {
        i: cell.get("outputs", [])
        for i, cell in enumerate(notebook.cells)
        if cell.cell_type == "code"
    }
    errors = [o for cell in outputs.values() for o in cell if o["output_type"] == "error"]
    assert not errors, errors
    result_cell = next(c for c in notebook.cells if c.source.startswith("result = await"))
    [shown] = [o for o in result_cell.outputs if o["output_type"] == "execute_result"]
    assert "completed" in shown["data"]["text/html"] and "4/4 steps" in shown["data"]["text/html"]
    assert "<svg" in shown["data"]["text/html"]
    sql_cell = next(c for c in notebook.cells if "%%wfsql" in c.source)
    assert "review" in sql_cell.outputs[0]["data"]["text/plain"]
    assert (tmp_path / ".wfnb" / "02-approvals.duckdb").exists()
