"""Property tests: whatever a cell holds, parsing raises a `DefinitionError` or
gives a workflow; whatever steps fail how often, a run ends in the states that
retries and fail-fast promise (docs/workflow-yaml.md, "Timeouts and retries" and
`fail_fast`)."""

from __future__ import annotations

import asyncio
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wfnb
from wfnb.model import STEP_KINDS
from wfnb.parse import parse_workflow

from .conftest import arun

S = wfnb.StepStatus
SETTINGS = settings(deadline=None, max_examples=80, suppress_health_check=[HealthCheck.too_slow])

# -- (a) random definitions -------------------------------------------------

IDS = ["a", "b", "c", "load", "x-1", "_s"]
JUNK = ["", "neds", "retyr", "__class__", "1", "steps", "with", "id", "é", "a b"]
WORKFLOW_KEYS = [
    "steps", "inputs", "timeout", "concurrency", "schedule", "fail_fast", "env",
    "description", "agent",
]  # fmt: skip
STEP_KEYS = [*STEP_KINDS, "needs", "with", "timeout", "retry", "if", "resources"]
SPEC_KEYS = [
    "url", "method", "prompt", "if", "then", "else", "while", "for_each", "body",
    "max_iterations", "timeout", "max_attempts", "backoff", "delay", "max_delay", "target",
]  # fmt: skip
TEMPLATES = [
    "{{ inputs.limit }}", "{{ steps.a.output }}", "{{ steps['b'].status }}", "{{ x +",
    "inputs.n > 3", "{% for i in range(3) %}{{ i }}{% endfor %}", "{{ loop.item }}",
    "{{ steps.nope.outptu }}", "{{ ''.__class__ }}", "}}{{",
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(IDS + JUNK + TEMPLATES + ["waves", "eager", "GET", "f"]),
    st.text(max_size=12),
)
keys = st.sampled_from(IDS + JUNK + WORKFLOW_KEYS + STEP_KEYS + SPEC_KEYS)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=12,
)
steps_body = st.dictionaries(
    st.sampled_from(STEP_KEYS + JUNK[:4]),
    st.one_of(values, st.lists(st.sampled_from(IDS), max_size=3)),
    min_size=1,
    max_size=4,
)
definitions = st.fixed_dictionaries(
    {"steps": st.one_of(st.dictionaries(st.sampled_from(IDS), steps_body, max_size=4), values)},
    optional={key: values for key in WORKFLOW_KEYS[1:] + JUNK[:3]},
)


def _parses_or_refuses(text: str | bytes) -> None:
    try:
        workflow = parse_workflow(text, name="prop")
    except wfnb.DefinitionError as exc:
        assert str(exc)  # a message, and nothing else escapes
    else:
        assert workflow.steps


@SETTINGS
@given(definitions)
def test_random_definitions_parse_or_raise_a_definition_error(data: dict[str, Any]) -> None:
    _parses_or_refuses(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


VALID = """\
inputs: {limit: 3}
steps:
  a: {code: f, with: {n: "{{ inputs.limit }}"}, retry: {max_attempts: 2}}
  b:
    code: f
    needs: [a]
    with: {x: "{{ steps.a.output }}"}
  c: {loop: {for_each: "[1, 2]", body: [d]}}
  d: {code: f, with: {i: "{{ loop.item }}"}}
"""


@SETTINGS
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=len(VALID)),
            st.integers(min_value=0, max_value=3),
            st.text(alphabet="{}[]:,-&*!|>'\"#\t\n x\x00\x07\udcff", max_size=3),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_a_mangled_cell_parses_or_raises_a_definition_error(
    edits: list[tuple[int, int, str]],
) -> None:
    text = VALID
    for at, cut, insert in edits:
        text = text[:at] + insert + text[at + cut :]
    _parses_or_refuses(text)


@SETTINGS
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_any_text_or_bytes_parses_or_raises_a_definition_error(text: str | bytes) -> None:
    _parses_or_refuses(text)


# -- (b) random DAGs with random failures, on the real engine ---------------


@st.composite
def failing_dags(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(min_value=1, max_value=7))
    steps = []
    for i in range(n):
        needs = draw(st.sets(st.integers(min_value=0, max_value=i - 1), max_size=3)) if i else set()
        steps.append(
            {
                "id": f"s{i}",
                "needs": sorted(f"s{j}" for j in needs),
                "attempts": draw(st.integers(min_value=1, max_value=3)),
                "fails": draw(st.integers(min_value=0, max_value=3)),
            }
        )
    return {
        "steps": steps,
        "fail_fast": draw(st.booleans()),
        "schedule": draw(st.sampled_from(["waves", "eager"])),
    }


def _run(dag: dict[str, Any]) -> tuple[wfnb.RunResult, dict[str, int], list[Any]]:
    calls: dict[str, int] = {}

    async def flaky(name: str, fails: int) -> str:
        calls[name] = calls.get(name, 0) + 1
        await asyncio.sleep(0)  # let other steps interleave
        if calls[name] <= fails:
            raise ValueError(f"{name} failure {calls[name]}")
        return name

    workflow = wfnb.Workflow(
        name="dag",
        fail_fast=dag["fail_fast"],
        schedule=dag["schedule"],
        steps=[
            wfnb.Step(
                id=s["id"],
                code=flaky,
                needs=s["needs"],
                with_={"name": s["id"], "fails": s["fails"]},
                retry=wfnb.Retry(max_attempts=s["attempts"], delay=0.0),
            )
            for s in dag["steps"]
        ],
    )

    async def main() -> tuple[wfnb.RunResult, list[Any]]:
        engine = wfnb.Engine(store=wfnb.MemoryStore())
        result = await (await engine.start(workflow)).wait()
        records = await engine.store.get_steps(run_id=result.run_id)
        await engine.close()
        return result, records

    result, records = arun(main())
    return result, calls, records


@SETTINGS
@given(failing_dags())
def test_random_failures_end_in_states_retry_and_fail_fast_promise(dag: dict[str, Any]) -> None:
    result, calls, records = _run(dag)
    steps = {s["id"]: s for s in dag["steps"]}
    latest: dict[str, Any] = {}
    for record in records:
        if record.step_id not in latest or record.attempt >= latest[record.step_id].attempt:
            latest[record.step_id] = record
    status = {sid: latest[sid].status if sid in latest else S.PENDING for sid in steps}
    doomed = {sid for sid, s in steps.items() if s["fails"] >= s["attempts"]}

    for sid, s in steps.items():
        needs_done = all(status[n] is S.COMPLETED for n in s["needs"])
        if status[sid] is S.COMPLETED:
            # fewer failures than attempts: it succeeds, after exactly fails + 1 calls
            assert sid not in doomed and needs_done
            assert calls[sid] == s["fails"] + 1 and latest[sid].attempt == s["fails"] + 1
            assert result.outputs[sid] == sid
        if sid in calls:  # it started: every need had completed first
            assert needs_done
            assert calls[sid] <= s["attempts"]
        if any(status[n] in (S.FAILED, S.CANCELLED, S.PENDING) for n in s["needs"]):
            assert sid not in calls and status[sid] is S.PENDING  # blocked, never started

    failed = [sid for sid in steps if status[sid] is S.FAILED]
    assert (result.status is wfnb.RunStatus.COMPLETED) == (not failed)
    if result.status is wfnb.RunStatus.COMPLETED:
        assert all(status[sid] is S.COMPLETED for sid in steps)
        assert not doomed
    else:
        assert result.status is wfnb.RunStatus.FAILED and result.failed_step in failed

    if not dag["fail_fast"]:
        # every step runs unless a need did not complete; each doomed one fails
        # after all its attempts
        for sid, s in steps.items():
            if all(status[n] is S.COMPLETED for n in s["needs"]):
                assert status[sid] is (S.FAILED if sid in doomed else S.COMPLETED)
                assert calls[sid] == min(s["fails"] + 1, s["attempts"])
        return
    if failed:
        # fail-fast: the first failure had used all its attempts, and no step, nor
        # another attempt of one waiting to retry, started after the engine took
        # that failure in.
        first = min((latest[sid] for sid in failed), key=lambda r: r.ended_at)
        assert first.step_id in doomed and first.attempt == steps[first.step_id]["attempts"]
        assert result.failed_step == first.step_id
        assert all(r.started_at <= first.ended_at for r in records)
        assert all(status[sid] is not S.RUNNING for sid in steps)
