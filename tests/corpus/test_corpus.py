"""The bad-input corpus: every file in ``cases/`` (and every case of
``generated.py``) is a workflow that must be refused with a clear error.

A case's header says what: the error class (``expect``), a fragment of its
message, the ``line`` and ``step`` it must name, and the ``stage`` where it is
found: ``parse`` (`Workflow.from_yaml`), ``start`` (`Engine.start` raises and
nothing is stored) or ``run`` (the run fails at ``step`` with the message, and the
engine goes on running other workflows).

Bounded in time and memory, without a clock: parse cases run in one child process
under RLIMIT_AS and RLIMIT_CPU (so a case that would crash the interpreter or run
away fails its test, not the test run) and report the peak that tracemalloc saw;
start and run cases assert their tracemalloc peak in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

import wfnb

from ..conftest import arun, wf
from .generated import all_cases, case_path, header

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
AS_LIMIT = 3 * 1024**3  # bytes of address space for the parse child (imports included)
CPU_LIMIT = 300  # seconds of CPU for all parse cases together
DEFAULT_MEMORY_MB = 32  # peak tracemalloc per case unless its header says more

CASES = all_cases()
PARSE = [name for name in CASES if header(name).get("stage", "parse") == "parse"]
ENGINE = [name for name in CASES if header(name).get("stage", "parse") != "parse"]


def test_the_corpus_has_the_cases_issue_8_asks_for():
    assert len(CASES) >= 30
    assert len({name.split("-", 1)[0] for name in CASES}) == len(CASES)  # unique numbers


@pytest.fixture(scope="module")
def parsed() -> dict[str, Any]:
    """Every parse case's outcome, from one child process under rlimits."""
    proc = subprocess.run(
        [sys.executable, str(HERE / "_parse_child.py"), str(AS_LIMIT), str(CPU_LIMIT), *PARSE],
        capture_output=True,
        text=True,
        cwd=HERE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)])},
        timeout=CPU_LIMIT * 4,
    )
    outcomes: dict[str, Any] = {}
    last = None
    for line in proc.stdout.splitlines():
        record = json.loads(line)
        last = record["case"]
        if not record.get("started"):
            outcomes[last] = record
    if proc.returncode != 0:
        outcomes["__died__"] = {
            "case": last,
            "code": proc.returncode,
            "stderr": proc.stderr[-2000:],
        }
    return outcomes


def _check(name: str, got: dict[str, Any], want: dict[str, Any]) -> None:
    if want["expect"] == "ok":
        assert got.get("ok"), got
        assert got["steps"] == want["steps"]
        return
    assert got.get("definition_error"), f"{name}: not a DefinitionError: {got}"
    assert got["error"] == want["expect"], got
    assert want["message"] in got["message"], got["message"]
    assert got["line"] == want.get("line"), got
    assert got["step"] == want.get("step"), got
    if want.get("line") is not None:
        where = f"line {want['line']}"
        assert where in got["message"], got["message"]


@pytest.mark.parametrize("name", PARSE)
def test_parse_case(name: str, parsed: dict[str, Any]) -> None:
    want = header(name)
    if name not in parsed:
        died = parsed.get("__died__", {})
        pytest.fail(f"the parse child died (exit {died.get('code')}) at {died.get('case')}")
    got = parsed[name]
    _check(name, got, want)
    assert got["peak"] < want.get("memory_mb", DEFAULT_MEMORY_MB) * 1024**2, got["peak"]


def take(x: Any) -> Any:
    return x


HELPERS = {
    "ping": "steps:\n  back: {workflow: case}\n",
    "takes_limit": "inputs: {limit: 1}\nsteps:\n  s: {code: take, with: {x: '{{ inputs.limit }}'}}\n",
    "fine": "steps:\n  s: {code: take, with: {x: 1}}\n",
}


@pytest.mark.parametrize("name", ENGINE)
def test_engine_case(name: str) -> None:
    want = header(name)
    text = case_path(name).read_text()

    async def main() -> None:
        store = wfnb.MemoryStore()
        engine = wfnb.Engine(store=store, namespace={"take": take})
        for helper, body in HELPERS.items():
            engine.register(wf(body, name=helper))
        workflow = wf(text, name="case")
        tracemalloc.start()
        try:
            if want["stage"] == "start":
                with pytest.raises(wfnb.DefinitionError) as info:
                    await engine.start(workflow, inputs=want.get("inputs"))
                err = info.value
                _check(
                    name,
                    {
                        "definition_error": True,
                        "error": type(err).__name__,
                        "message": str(err),
                        "line": err.line,
                        "step": err.step_id,
                    },
                    want,
                )
                assert await store.list_runs() == []  # nothing half-written
            else:
                result = await (await engine.start(workflow)).wait()
                assert result.status is wfnb.RunStatus.FAILED, result
                assert result.failed_step == want["step"], result
                assert want["message"] in (result.error or ""), result.error
                assert result.error.startswith(f"step {want['step']!r} failed"), result.error
                for record in await store.list_runs():
                    assert record.status.finished, record
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < want.get("memory_mb", DEFAULT_MEMORY_MB) * 1024**2, peak
        # the engine took no harm: it runs the next workflow
        assert (await (await engine.start(engine.workflows["fine"])).wait()).ok
        await engine.close()

    arun(main())
