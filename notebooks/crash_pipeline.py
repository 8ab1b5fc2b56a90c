"""The workflow of 04-crash-and-resume.ipynb: three steps, each logging who ran it.

``python crash_pipeline.py DB LOG`` runs it headless on the DuckDB file DB: that is
the child process the notebook kills. With ``PIPELINE_READY`` set (only the child
has it), ``transform`` creates that file once it has started, then waits to be
killed.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import wfnb

PIPELINE = """
inputs: {log: steps.log}
steps:
  extract:
    code: extract
    with: {log: "{{ inputs.log }}"}
  transform:
    code: transform
    needs: [extract]
    with: {rows: "{{ steps.extract.output }}", log: "{{ inputs.log }}"}
  load:
    code: load
    needs: [transform]
    with: {rows: "{{ steps.transform.output }}", log: "{{ inputs.log }}"}
"""


def _ran(log: str, step: str) -> None:
    who = "the child process" if os.environ.get("PIPELINE_READY") else "the notebook"
    with open(log, "a") as f:
        f.write(f"{step} ran in {who}\n")


def extract(log: str) -> list[int]:
    _ran(log, "extract")
    return [3, 1, 2]


async def transform(rows: list[int], log: str) -> list[int]:
    _ran(log, "transform")
    ready = os.environ.get("PIPELINE_READY")
    if ready:
        Path(ready).touch()
        await asyncio.sleep(3600)  # killed here
    return sorted(rows)


def load(rows: list[int], log: str) -> dict[str, int]:
    _ran(log, "load")
    return {"loaded": len(rows)}


if __name__ == "__main__":
    engine = wfnb.Engine(store=wfnb.DuckDBStore(Path(sys.argv[1])), namespace=globals())
    engine.run_sync(wfnb.Workflow.from_yaml(PIPELINE, name="nightly"), {"log": sys.argv[2]})
