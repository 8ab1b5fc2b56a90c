"""The store conformance suite: the executable form of `wfnb.store.base.Store`.

A store (ours or a third party's) passes it by subclassing `StoreConformance` in a
test module and providing a ``store`` fixture that yields a fresh, empty store::

    import pytest
    from wfnb.testing import StoreConformance

    class TestMyStore(StoreConformance):
        @pytest.fixture
        def store(self, tmp_path):
            store = MyStore(tmp_path / "runs.db")
            yield store
            close_store(store)

The test methods are plain (synchronous) pytest tests that drive the store's
coroutines with ``asyncio.run``, so no async pytest plugin is needed.

Two latitudes are part of the contract and therefore of the suite:

- times are kept to the microsecond (a store may keep them as SQL timestamps);
- a store that keeps outputs only in memory (``serializes_outputs = False`` on its
  class, as `MemoryStore` has) may accept outputs that cannot be serialized. Every
  store that persists must refuse them with `StoreError` and leave nothing of the
  batch behind.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import threading
import time
from collections.abc import Coroutine
from decimal import Decimal
from typing import Any, TypeVar

import pytest

from wfnb.errors import StoreError
from wfnb.model import RunStatus, StepStatus
from wfnb.store.base import Batch, CallRecord, RunRecord, StepRecord, Store, WorkflowRecord

__all__ = ["StoreConformance", "assert_same_value", "close_store"]

T = TypeVar("T")

#: Stores may keep times as SQL timestamps, whose unit is the microsecond.
TIME_TOLERANCE = 1e-6


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def close_store(store: Store) -> None:
    """Close ``store`` from synchronous fixture code."""
    _run(store.close())


def assert_same_value(got: Any, want: Any) -> None:
    """Assert ``got`` equals ``want`` *and* has the same types all the way down:
    a tuple is not a list, ``1`` is not ``1.0``, and NaN equals NaN. DataFrames and
    Arrow tables are compared by content and dtypes."""
    import pandas as pd
    import pyarrow as pa

    assert type(got) is type(want), f"{type(got).__name__} != {type(want).__name__}"
    if isinstance(want, pd.DataFrame):
        pd.testing.assert_frame_equal(got, want, check_exact=True)
    elif isinstance(want, pa.Table):
        assert got.schema.equals(want.schema), f"{got.schema} != {want.schema}"
        assert got.equals(want)
    elif isinstance(want, float) and math.isnan(want):
        assert math.isnan(got)
    elif isinstance(want, float):
        assert got == want and math.copysign(1.0, got) == math.copysign(1.0, want)
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), f"{got!r} != {want!r}"
        for g, w in zip(got, want, strict=True):
            assert_same_value(g, w)
    elif isinstance(want, dict):
        assert list(got) == list(want), f"keys {list(got)!r} != {list(want)!r}"
        for key in want:
            assert_same_value(got[key], want[key])
    else:
        assert got == want, f"{got!r} != {want!r}"


def _assert_same_record(got: Any, want: Any) -> None:
    assert type(got) is type(want)
    for f in dataclasses.fields(want):
        g, w = getattr(got, f.name), getattr(want, f.name)
        if f.name.endswith("_at") and w is not None:
            assert g is not None and abs(g - w) <= TIME_TOLERANCE, f"{f.name}: {g} != {w}"
        elif f.name in ("output", "inputs", "data"):
            assert_same_value(g, w)
        else:
            assert g == w, f"{f.name}: {g!r} != {w!r}"


@dataclasses.dataclass(frozen=True)
class _Point:
    x: int
    y: float


def _json_values() -> list[Any]:
    return [
        None,
        True,
        0,
        -7,
        2**70,
        1.5,
        -0.0,
        "",
        "héllo ✓",
        [],
        {},
        [1, "a", None, [2.5, {"k": [True]}]],
        {"nested": {"deep": [{"a": 1}, {"b": [1, 2.0]}]}, "n": None},
    ]


def _exact_values() -> list[Any]:
    """Values JSON cannot round-trip exactly; a store must still give them back."""
    return [
        (1, 2),
        [(1, "a")],
        {1: "int key"},
        {(1, 2): "tuple key"},
        {"x": (1.0,)},
        float("nan"),
        float("inf"),
        [float("-inf")],
        1.0,
        [1, 1.0],
        {True: 1, "1": 2},
        "\ud800 lone surrogate",
        {"s": {1, 2, 3}},
    ]


def _pickled_values() -> list[Any]:
    return [
        _Point(1, 2.5),
        {1, 2, 3},
        frozenset({"a"}),
        b"\x00\xffbytes",
        bytearray(b"ab"),
        Decimal("1.10"),
        complex(1, 2),
        range(3),
    ]


def _frames() -> list[Any]:
    import pandas as pd
    import pyarrow as pa

    mixed = pd.DataFrame(
        {
            "i": [1, 2, 3],
            "f": [0.5, float("nan"), -1.0],
            "s": ["a", None, "c"],
            "b": [True, False, True],
            "t": pd.to_datetime(["2024-01-01", None, "2024-03-01"]),
            "c": pd.Categorical(["x", "y", "x"]),
            "n": pd.array([1, None, 3], dtype="Int64"),
        },
        index=pd.Index([10, 20, 30], name="k"),
    )
    return [
        pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}),
        mixed,
        pd.DataFrame({0: [1.0], 1: ["int column labels"]}),
        pd.DataFrame({"empty": pd.Series([], dtype="int64")}),
        pa.table({"a": [1, 2, 3], "b": ["x", None, "z"]}),
    ]


class StoreConformance:
    """Tests every `Store` must pass. Subclass it and provide a ``store`` fixture
    yielding a fresh, empty store (see the module docstring)."""

    NOW = 1_763_990_000.123456

    # -- record factories ---------------------------------------------------------
    def wf(self, name: str = "etl", h: str = "h1") -> WorkflowRecord:
        return WorkflowRecord(
            name=name, definition=f"steps: {{}} # {name}", definition_hash=h, created_at=self.NOW
        )

    def run_record(self, run_id: str = "r1", **kw: Any) -> RunRecord:
        base: dict[str, Any] = dict(
            run_id=run_id,
            workflow="etl",
            definition_hash="h1",
            status=RunStatus.RUNNING,
            inputs={"limit": 5},
            created_at=self.NOW,
        )
        return RunRecord(**{**base, **kw})

    def step(
        self, step_id: str = "s1", run_id: str = "r1", attempt: int = 1, **kw: Any
    ) -> StepRecord:
        base: dict[str, Any] = dict(
            run_id=run_id,
            step_id=step_id,
            attempt=attempt,
            status=StepStatus.COMPLETED,
            started_at=self.NOW + 1,
            ended_at=self.NOW + 2,
        )
        return StepRecord(**{**base, **kw})

    def call(
        self, step_id: str = "s1", run_id: str = "r1", attempt: int = 1, seq: int = 1, **kw: Any
    ) -> CallRecord:
        base: dict[str, Any] = dict(
            run_id=run_id,
            step_id=step_id,
            attempt=attempt,
            seq=seq,
            kind="http",
            started_at=self.NOW + seq,
            data={"method": "GET", "url": "http://127.0.0.1/x", "status": 200, "bytes": 2},
        )
        return CallRecord(**{**base, **kw})

    def write(self, store: Store, **kw: Any) -> None:
        _run(store.write(Batch(**kw)))

    def output_round_trip(self, store: Store, value: Any) -> Any:
        record = self.step(output=value, has_output=True)
        self.write(store, runs=[self.run_record()], steps=[record])
        (got,) = _run(store.get_steps(run_id="r1"))
        _assert_same_record(got, record)
        return got.output

    # -- round trips --------------------------------------------------------------
    def test_workflow_round_trip(self, store: Store) -> None:
        self.write(store, workflows=[self.wf(), self.wf(h="h2")])
        _assert_same_record(
            _run(store.get_workflow(name="etl", definition_hash="h2")), self.wf(h="h2")
        )
        assert _run(store.get_workflow(name="etl", definition_hash="nope")) is None

    def test_run_round_trip_every_field(self, store: Store) -> None:
        now = time.time()
        full = self.run_record(
            "child",
            status=RunStatus.FAILED,
            inputs={"a": [1, {"b": None}]},
            created_at=now,
            started_at=now + 0.001,
            ended_at=now + 1.5,
            error="boom",
            failed_step="load",
            parent_run_id="parent",
            parent_step_id="sub",
            depth=2,
            owner="host:123:99",
            code_hashes={"load": "3f2a9c", "fetch": "b71e00"},
        )
        self.write(store, runs=[full, self.run_record("bare", started_at=None)])
        _assert_same_record(_run(store.get_run(run_id="child")), full)
        got = _run(store.get_run(run_id="child"))
        assert got is not None and isinstance(got.status, RunStatus)
        _assert_same_record(_run(store.get_run(run_id="bare")), self.run_record("bare"))
        assert _run(store.get_run(run_id="missing")) is None

    @pytest.mark.parametrize("status", list(StepStatus))
    def test_step_round_trip_every_status(self, store: Store, status: StepStatus) -> None:
        record = self.step(
            status=status,
            error="why" if status is StepStatus.FAILED else None,
            traceback=(
                'Traceback (most recent call last):\n  File "cell", line 2, in f\nValueError: why\n'
                if status is StepStatus.FAILED
                else None
            ),
            started_at=time.time(),
            ended_at=None,
            worker="tcp://10.0.0.7:40123" if status is StepStatus.COMPLETED else None,
        )
        self.write(store, runs=[self.run_record()], steps=[record])
        (got,) = _run(store.get_steps(run_id="r1"))
        _assert_same_record(got, record)
        assert isinstance(got.status, StepStatus)
        assert _run(store.get_steps(run_id="unknown")) == []

    def test_run_inputs_round_trip_exactly(self, store: Store) -> None:
        inputs = {"t": (1, 2), "k": {1: "x"}, "f": 1.0, "s": {1}, "nan": float("nan")}
        self.write(store, runs=[self.run_record(inputs=inputs)])
        _assert_same_record(_run(store.get_run(run_id="r1")), self.run_record(inputs=inputs))

    def test_calls_round_trip_ordered_by_start_then_seq(self, store: Store) -> None:
        agent = self.call(
            "ask",
            attempt=2,
            seq=1,
            kind="agent",
            data={"model": "m", "total_tokens": 7, "error": None, "ratio": 0.5, "x": [1, "a"]},
        )
        early = self.call("s1", seq=2, started_at=self.NOW)
        later = self.call("s1", seq=1, started_at=self.NOW + 5)
        self.write(store, runs=[self.run_record()], calls=[later, agent, early])
        got = _run(store.get_calls(run_id="r1"))
        assert [(c.step_id, c.seq) for c in got] == [("s1", 2), ("ask", 1), ("s1", 1)]
        for g, want in zip(got, [early, agent, later], strict=True):
            _assert_same_record(g, want)
        assert _run(store.get_calls(run_id="unknown")) == []

    def test_call_upserted_by_key(self, store: Store) -> None:
        first = self.call(data={"status": None, "error": "timed out"})
        again = self.call(data={"status": 200, "error": None})
        self.write(store, calls=[first])
        self.write(store, calls=[first, again])
        (got,) = _run(store.get_calls(run_id="r1"))
        _assert_same_record(got, again)

    # -- upserts ------------------------------------------------------------------
    def test_upsert_replaces_whole_record(self, store: Store) -> None:
        self.write(
            store,
            runs=[self.run_record(owner="a:1")],
            steps=[self.step(status=StepStatus.RUNNING, ended_at=None)],
        )
        done = self.run_record(status=RunStatus.COMPLETED, ended_at=self.NOW + 9, owner=None)
        finished = self.step(output={"v": 1}, has_output=True)
        self.write(store, runs=[done], steps=[finished])
        _assert_same_record(_run(store.get_run(run_id="r1")), done)
        (got,) = _run(store.get_steps(run_id="r1"))
        _assert_same_record(got, finished)

    def test_same_batch_twice_changes_nothing(self, store: Store) -> None:
        batch = Batch(
            workflows=[self.wf()],
            runs=[self.run_record()],
            steps=[self.step("a", output=[1], has_output=True), self.step("b")],
        )
        _run(store.write(batch))
        first = (_run(store.list_runs()), _run(store.get_steps(run_id="r1")))
        _run(store.write(batch))
        runs, steps = _run(store.list_runs()), _run(store.get_steps(run_id="r1"))
        assert len(runs) == 1 and len(steps) == 2
        for got, want in zip([*runs, *steps], [*first[0], *first[1]], strict=True):
            _assert_same_record(got, want)

    def test_last_record_of_a_key_in_one_batch_wins(self, store: Store) -> None:
        # (as a run that starts at once is written; its events, of one time, keep
        # the order written)
        runs = [self.run_record(status=RunStatus.PENDING), self.run_record()]
        steps = [self.step(status=StepStatus.RUNNING), self.step()]
        _run(store.write(Batch.changes(runs=runs, steps=steps, at=self.NOW)))
        assert _run(store.get_run(run_id="r1")).status is RunStatus.RUNNING  # type: ignore[union-attr]
        assert [s.status for s in _run(store.get_steps(run_id="r1"))] == [StepStatus.COMPLETED]
        events = [e.event for e in _run(store.get_events(run_id="r1"))]
        assert events == ["run_pending", "run_started", "step_started", "step_completed"]

    def test_empty_batch_is_a_no_op(self, store: Store) -> None:
        self.write(store)
        assert _run(store.list_runs()) == []

    # -- queries ------------------------------------------------------------------
    def test_list_runs_filters_and_newest_first(self, store: Store) -> None:
        runs = [
            self.run_record("old", created_at=self.NOW, status=RunStatus.COMPLETED),
            self.run_record("mid", created_at=self.NOW + 1, workflow="other"),
            self.run_record("new", created_at=self.NOW + 2, status=RunStatus.PAUSED),
            self.run_record("kid", created_at=self.NOW + 3, parent_run_id="new", depth=1),
        ]
        self.write(store, runs=runs[::-1][1:] + runs[-1:])

        def ids(**kw: Any) -> list[str]:
            return [r.run_id for r in _run(store.list_runs(**kw))]

        assert ids() == ["kid", "new", "mid", "old"]
        assert ids(workflow="etl") == ["kid", "new", "old"]
        assert ids(statuses=[RunStatus.PAUSED, RunStatus.COMPLETED]) == ["new", "old"]
        assert ids(statuses=[]) == []
        assert ids(parent_run_id="new") == ["kid"]
        assert ids(limit=2) == ["kid", "new"]
        assert ids(workflow="etl", statuses=[RunStatus.RUNNING], limit=5) == ["kid"]
        assert ids(workflow="nope") == []

    def test_get_steps_ordered_by_start_then_attempt_all_attempts_kept(self, store: Store) -> None:
        t = self.NOW
        steps = [
            self.step("late", started_at=t + 5),
            self.step("retry", attempt=2, started_at=t + 3, status=StepStatus.COMPLETED),
            self.step(
                "retry", attempt=1, started_at=t + 1, status=StepStatus.FAILED, error="first try"
            ),
            self.step("BODY[1]", started_at=t + 4),
            self.step("first", started_at=t, ended_at=t + 0.5),
        ]
        self.write(store, runs=[self.run_record()], steps=steps)
        got = _run(store.get_steps(run_id="r1"))
        assert [(s.step_id, s.attempt) for s in got] == [
            ("first", 1),
            ("retry", 1),
            ("retry", 2),
            ("BODY[1]", 1),
            ("late", 1),
        ]
        assert got[1].error == "first try"

    # -- outputs ------------------------------------------------------------------
    @pytest.mark.parametrize("value", _json_values(), ids=repr)
    def test_json_outputs_restored_exactly(self, store: Store, value: Any) -> None:
        self.output_round_trip(store, value)

    @pytest.mark.parametrize("value", _exact_values(), ids=repr)
    def test_values_json_would_change_are_restored_exactly(self, store: Store, value: Any) -> None:
        self.output_round_trip(store, value)

    @pytest.mark.parametrize("value", _pickled_values(), ids=repr)
    def test_arbitrary_objects_restored_equal(self, store: Store, value: Any) -> None:
        self.output_round_trip(store, value)

    @pytest.mark.parametrize("value", _frames(), ids=lambda v: type(v).__name__)
    def test_tables_restored_same_type_and_content(self, store: Store, value: Any) -> None:
        self.output_round_trip(store, value)

    def test_output_replaced_by_a_later_attempt_record(self, store: Store) -> None:
        import pandas as pd

        frame = pd.DataFrame({"a": [1]})
        self.write(
            store, runs=[self.run_record()], steps=[self.step(output=frame, has_output=True)]
        )
        self.write(store, steps=[self.step(output="now json", has_output=True)])
        (got,) = _run(store.get_steps(run_id="r1"))
        assert got.output == "now json"

    # -- atomicity ----------------------------------------------------------------
    def _unserializable_batch(self) -> Batch:
        import pandas as pd

        return Batch(
            workflows=[self.wf("bad")],
            runs=[self.run_record("bad")],
            steps=[
                self.step("ok", run_id="bad", output={"a": 1}, has_output=True),
                self.step("frame", run_id="bad", output=pd.DataFrame({"x": [1]}), has_output=True),
                self.step("lock", run_id="bad", output=threading.Lock(), has_output=True),
                self.step("fn", run_id="bad", output=lambda: 1, has_output=True),
            ],
        )

    def test_unserializable_batch_leaves_nothing(self, store: Store) -> None:
        batch = self._unserializable_batch()
        if getattr(store, "serializes_outputs", True):
            with pytest.raises(StoreError):
                _run(store.write(batch))
            assert _run(store.get_run(run_id="bad")) is None
            assert _run(store.get_steps(run_id="bad")) == []
            assert _run(store.get_workflow(name="bad", definition_hash="h1")) is None
        else:  # an in-memory store keeps the objects themselves: all of them
            _run(store.write(batch))
            assert len(_run(store.get_steps(run_id="bad"))) == 4

    def test_failed_update_keeps_previous_state(self, store: Store) -> None:
        self.write(store, runs=[self.run_record()], steps=[self.step(output=1, has_output=True)])
        unpicklable = lambda: 2  # noqa: E731 - the point is that it cannot be pickled
        update = {
            "runs": [self.run_record(status=RunStatus.FAILED)],
            "steps": [self.step(output=unpicklable, has_output=True)],
        }
        if not getattr(store, "serializes_outputs", True):
            # An in-memory store keeps the objects themselves: nothing can fail to
            # serialize, and the update is applied whole.
            self.write(store, **update)
            assert _run(store.get_run(run_id="r1")).status is RunStatus.FAILED  # type: ignore[union-attr]
            assert [s.output for s in _run(store.get_steps(run_id="r1"))] == [unpicklable]
            return
        with pytest.raises(StoreError):
            self.write(store, **update)
        assert _run(store.get_run(run_id="r1")).status is RunStatus.RUNNING  # type: ignore[union-attr]
        assert [s.output for s in _run(store.get_steps(run_id="r1"))] == [1]

    def test_concurrent_writes_each_durable_bad_one_alone_fails(self, store: Store) -> None:
        serializes = getattr(store, "serializes_outputs", True)

        async def go() -> list[Any]:
            good = [
                store.write(
                    Batch(
                        runs=[self.run_record(f"r{i}")],
                        steps=[self.step(run_id=f"r{i}", output=i, has_output=True)],
                    )
                )
                for i in range(40)
            ]
            return await asyncio.gather(
                *good[:20],
                store.write(self._unserializable_batch()),
                *good[20:],
                return_exceptions=True,
            )

        results = _run(go())
        assert results[:20] + results[21:] == [None] * 40
        if serializes:
            assert isinstance(results[20], StoreError)
            assert _run(store.get_run(run_id="bad")) is None
        assert len(_run(store.list_runs())) == 40 + (0 if serializes else 1)
        for i in (0, 19, 39):
            assert [s.output for s in _run(store.get_steps(run_id=f"r{i}"))] == [i]

    # -- retention and lifecycle --------------------------------------------------
    def test_prune(self, store: Store) -> None:
        import pandas as pd

        t = self.NOW
        statuses = {f"old-{s.value}": s for s in RunStatus}
        runs = [self.run_record(rid, status=s, created_at=t) for rid, s in statuses.items()]
        runs.append(self.run_record("young", status=RunStatus.COMPLETED, created_at=t + 100))
        steps = [
            self.step("s", run_id=r.run_id, output=pd.DataFrame({"a": [1]}), has_output=True)
            for r in runs
        ]
        calls = [self.call("s", run_id=r.run_id) for r in runs]
        self.write(store, runs=runs, steps=steps, calls=calls)

        assert _run(store.prune(older_than=t + 50, keep_failed=True)) == 2
        assert _run(store.get_calls(run_id="old-completed")) == []
        assert len(_run(store.get_calls(run_id="old-failed"))) == 1
        left = {r.run_id for r in _run(store.list_runs())}
        assert left == {"old-pending", "old-running", "old-paused", "old-failed", "young"}
        assert _run(store.get_steps(run_id="old-completed")) == []
        assert _run(store.prune(older_than=t + 50)) == 1
        assert _run(store.get_run(run_id="old-failed")) is None
        assert _run(store.get_steps(run_id="old-failed")) == []
        assert _run(store.prune(older_than=t)) == 0
        kept = _run(store.get_steps(run_id="young"))
        assert_same_value(kept[0].output, pd.DataFrame({"a": [1]}))

    def test_events_are_history_each_change_as_it_was(self, store: Store) -> None:
        t = self.NOW
        changes = [
            Batch.changes(runs=[self.run_record(status=RunStatus.PENDING)], at=t),
            Batch.changes(
                runs=[self.run_record(status=RunStatus.RUNNING)],
                steps=[self.step(status=StepStatus.RUNNING, ended_at=None)],
                at=t + 1,
            ),
            Batch.changes(steps=[self.step(status=StepStatus.FAILED, error="boom")], at=t + 2),
            Batch.changes(runs=[self.run_record(status=RunStatus.FAILED, error="x")], at=t + 3),
        ]
        for batch in changes:
            _run(store.write(batch))
        # events written twice: no new rows, whether the repeat comes in the same
        # batch or after the first were read (a store that folds on reads then
        # meets it in a later fold)
        _run(store.write(Batch(events=[*changes[0].events, *changes[0].events])))
        assert len(_run(store.get_events(run_id="r1"))) == 5
        _run(store.write(Batch(events=changes[1].events)))
        events = _run(store.get_events(run_id="r1"))
        assert [(e.event, e.step_id, e.attempt, e.status, e.error) for e in events] == [
            ("run_pending", None, None, "pending", None),
            ("run_started", None, None, "running", None),
            ("step_started", "s1", 1, "running", None),
            ("step_failed", "s1", 1, "failed", "boom"),
            ("run_failed", None, None, "failed", "x"),
        ]
        assert [e.at for e in events] == [t, t + 1, t + 1, t + 2, t + 3]
        assert _run(store.get_events(run_id="nope")) == []
        assert _run(store.prune(older_than=t + 10)) == 1
        assert _run(store.get_events(run_id="r1")) == []

    def test_close_is_idempotent(self, store: Store) -> None:
        self.write(store, runs=[self.run_record()])
        _run(store.close())
        _run(store.close())
