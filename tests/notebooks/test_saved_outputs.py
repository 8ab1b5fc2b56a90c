"""The notebooks under notebooks/ are saved executed, so that nbval has outputs to
compare (it passes a cell that was never run without looking at it) and a reader on
GitHub sees what the code does. `bash scripts/refresh-notebooks.sh` re-saves them."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


def test_the_set_is_there():
    assert [p.name[:3] for p in NOTEBOOKS] == ["01-", "02-", "03-", "04-", "05-", "06-"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_saved_top_to_bottom_with_outputs(path: Path):
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1)), (
        f"{path.name} is not saved as one top-to-bottom run: bash scripts/refresh-notebooks.sh"
    )
    errors = [o for cell in code for o in cell.outputs if o.output_type == "error"]
    assert not errors, errors
    assert "widgets" not in notebook.metadata, "saved widget state: models a reader cannot use"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_notebook_empties_its_own_store(path: Path):
    """Reruns are deterministic only if no earlier run is in the store."""
    source = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells)
    assert f'DB = Path(".wfnb/{path.stem}.duckdb")' in source
    assert "%config Wfnb.db = str(DB)" in source
    assert source.index("%config Wfnb.db") < source.index("%load_ext wfnb")
