"""`_codec.encode_batch`'s fast paths decide exactly what the slow checks decide."""

from __future__ import annotations

import pytest

from wfnb.errors import StoreError
from wfnb.model import RunStatus, StepStatus
from wfnb.store.base import Batch, EventRecord, RunRecord, StepRecord, WorkflowRecord
from wfnb.store.duckdb import _codec

NOW = 1_763_990_000.5


def run(code_hashes: object) -> Batch:
    rec = RunRecord(
        run_id="r1", workflow="w", definition_hash="h", status=RunStatus.RUNNING, inputs={},
        created_at=NOW, code_hashes=code_hashes,  # type: ignore[arg-type]
    )  # fmt: skip
    return Batch(runs=[rec])


@pytest.mark.parametrize("hashes", [{}, {"s": "abc"}, {"é": "ü"}, {"s" * 300: "x" * 300, "t": "y"}])
def test_code_hashes_of_str_are_kept_as_json(hashes: dict[str, str]) -> None:
    import json

    (row,) = _codec.encode_batch(run(hashes)).runs
    assert json.loads(row[-1]) == hashes


@pytest.mark.parametrize(
    "hashes", [{1: "a"}, {"s": "\ud800"}, {"\udfff": "a"}, {"s": float("nan")}, ["s"]]
)
def test_code_hashes_that_are_not_str_to_str_utf8_are_refused(hashes: object) -> None:
    with pytest.raises(StoreError, match="code_hashes"):
        _codec.encode_batch(run(hashes))


def test_code_hashes_encoded_again_follow_the_map_not_the_last_text() -> None:
    """The last map's text is reused for an equal map (a run's every record),
    never for one that changed since, even the same dict object."""
    hashes = {"a": "1"}
    texts = [_codec.encode_batch(run(hashes)).runs[0][-1]]
    hashes["b"] = "2"
    texts.append(_codec.encode_batch(run(hashes)).runs[0][-1])
    texts.append(_codec.encode_batch(run({"a": "1", "b": "2"})).runs[0][-1])
    texts.append(_codec.encode_batch(run({"a": "1"})).runs[0][-1])
    assert texts == ['{"a": "1"}', '{"a": "1", "b": "2"}', '{"a": "1", "b": "2"}', '{"a": "1"}']
    with pytest.raises(StoreError, match="code_hashes"):
        _codec.encode_batch(run({"a": "1", "b": "\ud800"}))


class _AlwaysEqual(str):
    """A str whose ``==`` says "same" to anything (as a numpy.str_ or a user's
    subclass may): it must never borrow the last map's text."""

    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = str.__hash__


def test_code_hashes_reuse_only_the_same_keys_and_values_in_the_same_order() -> None:
    texts = [_codec.encode_batch(run({"a": "1", "b": "2"})).runs[0][-1]]
    texts.append(_codec.encode_batch(run({"b": "2", "a": "1"})).runs[0][-1])
    assert texts == ['{"a": "1", "b": "2"}', '{"b": "2", "a": "1"}']
    _codec.encode_batch(run({"a": "x"}))
    with pytest.raises(StoreError, match="code_hashes"):  # as it is in a fresh process
        _codec.encode_batch(run({"a": _AlwaysEqual("y")}))


def test_events_of_one_time_share_its_microseconds_and_errors_are_made_utf8() -> None:
    at = NOW
    events = [EventRecord("r1", "running", at, "s", 1), EventRecord("r1", "failed", at, "s", 1,
              error="bad \udcff"), EventRecord("r1", "running", at + 1)]  # fmt: skip
    rows = _codec.encode_batch(Batch(events=events)).events
    assert [r[0] for r in rows] == [1_763_990_000_500_000] * 2 + [1_763_990_001_500_000]
    assert [r[6] for r in rows] == [None, "bad \\udcff", None]
    with pytest.raises(StoreError, match="attempt"):
        _codec.encode_batch(Batch(events=[EventRecord("r1", "running", at, "s", 2**31)]))
    with pytest.raises(StoreError, match="no time"):
        _codec.encode_batch(Batch(events=[EventRecord("r1", "running", None)]))  # type: ignore[arg-type]


def test_a_step_without_output_and_one_with_none_differ() -> None:
    def step(**kw: object) -> StepRecord:
        return StepRecord(run_id="r1", step_id="s", attempt=1, status=StepStatus.COMPLETED,
                          started_at=NOW, **kw)  # type: ignore[arg-type]  # fmt: skip

    none, absent = _codec.encode_batch(
        Batch(steps=[step(output=None, has_output=True), step(has_output=False)])
    ).steps
    assert (none[3], none[7], none[8]) == ("completed", "null", "json")
    assert (absent[7], absent[8]) == (None, "none")


@pytest.mark.parametrize(
    ("field", "value"),
    [("run_id", "\ud800"), ("step_id", 3), ("status", RunStatus.RUNNING), ("step_id", "\udc00")],
)
def test_event_keys_are_checked_on_the_fast_path_too(field: str, value: object) -> None:
    fields: dict[str, object] = dict(run_id="r1", status="running", at=NOW, step_id="s", attempt=1)
    fields[field] = value
    with pytest.raises(StoreError):
        _codec.encode_batch(Batch(events=[EventRecord(**fields)]))  # type: ignore[arg-type]


def test_non_ascii_keys_that_are_valid_utf8_are_kept() -> None:
    out = _codec.encode_batch(
        Batch(
            steps=[StepRecord(run_id="r1", step_id="é", attempt=1, status="running",  # type: ignore[arg-type]
                              started_at=NOW)],
            events=[EventRecord(run_id="r1", status="running", at=NOW, step_id="é", attempt=1)],
        )
    )  # fmt: skip
    assert out.steps[0][1] == "é" and out.steps[0][3] == "running"
    assert out.events[0][1:4] == ("r1", "é", 1) and out.events[0][5] == "running"


def test_events_of_changes_are_written_as_the_same_rows_as_event_records() -> None:
    """`Batch.changes`'s events are made from its runs' and steps' rows; they are
    exactly the rows its `EventRecord`s give, one by one (errors made UTF-8 too)."""
    runs = [
        RunRecord(run_id="r1", workflow="w", definition_hash="h", status=RunStatus.FAILED,
                  inputs={}, created_at=NOW, error="bad \udcff"),
        RunRecord(run_id="ré", workflow="w", definition_hash="h", status=RunStatus.RUNNING,
                  inputs={}, created_at=NOW),
    ]  # fmt: skip
    steps = [
        StepRecord(run_id="r1", step_id=sid, attempt=attempt, status=status, started_at=NOW,
                   error=error)
        for sid, attempt, status, error in [
            ("s", 1, StepStatus.RUNNING, None),
            ("é", 2, StepStatus.FAILED, "boom \ud800"),
            ("t", 1, StepStatus.WAITING_APPROVAL, None),
            ("u", 3, StepStatus.SKIPPED, None),
        ]
    ]  # fmt: skip
    changes = Batch.changes(runs=runs, steps=steps, at=NOW)
    one_by_one = Batch(runs=runs, steps=steps, events=list(changes.events))
    assert changes.derived_events is not None and one_by_one.derived_events is None
    rows = _codec.encode_batch(changes).events
    assert rows == _codec.encode_batch(one_by_one).events
    assert [r[4] for r in rows] == [
        "run_failed", "run_started", "step_started", "step_failed", "step_waiting", "step_skipped"
    ]  # fmt: skip
    with pytest.raises(StoreError, match="epoch"):
        _codec.encode_batch(Batch.changes(steps=steps, at=float("nan")))
    # no record changed, no time needed: a batch of a workflow alone
    workflow = WorkflowRecord("w", "steps: []", "h", NOW)
    assert _codec.encode_batch(Batch.changes(workflows=[workflow], at=float("nan"))).events == []
