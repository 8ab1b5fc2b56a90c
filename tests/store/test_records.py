"""The store records: `quick_init` makes them as the dataclass would, only faster."""

import dataclasses
import pickle

import pytest

from wfnb.model import RunStatus, StepStatus
from wfnb.store.base import (
    Batch,
    CallRecord,
    ChangeEvents,
    EventRecord,
    RunRecord,
    StepRecord,
    quick_init,
)


@dataclasses.dataclass(frozen=True, slots=True)
class _Plain:
    a: int
    b: str = "b"
    c: dict[str, int] = dataclasses.field(default_factory=dict)


@quick_init
@dataclasses.dataclass(frozen=True, slots=True)
class _Quick:
    a: int
    b: str = "b"
    c: dict[str, int] = dataclasses.field(default_factory=dict)


def test_quick_init_takes_what_the_dataclass_init_takes():
    for args, kwargs in [((1,), {}), ((1, "x"), {}), ((1,), {"c": {"k": 1}}), ((), {"a": 2})]:
        plain, quick = _Plain(*args, **kwargs), _Quick(*args, **kwargs)
        assert dataclasses.astuple(plain) == dataclasses.astuple(quick)
    with pytest.raises(TypeError):
        _Quick()  # type: ignore[call-arg]


def test_quick_init_is_not_the_generated_one():
    # the generated frozen __init__ goes through object.__setattr__, field by field
    assert "__dataclass_builtins_object__" not in _Quick.__init__.__code__.co_names
    assert _Quick.__init__.__qualname__ == "_Quick.__init__"


def test_a_factory_default_is_fresh_for_each_record():
    one, two = _Quick(1), _Quick(1)
    assert one.c == {} and one.c is not two.c
    assert CallRecord("r", "s", 1, 1, "http", 0.0).data is not (
        CallRecord("r", "s", 1, 1, "http", 0.0).data
    )


def test_records_stay_frozen_hashable_and_replaceable():
    event = EventRecord("r", "running", 1.0, "s", 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.at = 2.0  # type: ignore[misc]
    assert hash(event) == hash(EventRecord("r", "running", 1.0, "s", 1, None))
    step = StepRecord("r", "s", 1, StepStatus.RUNNING, 1.0)
    done = dataclasses.replace(step, status=StepStatus.COMPLETED, output=3, has_output=True)
    assert (done.status, done.output, done.has_output, done.started_at) == (
        StepStatus.COMPLETED,
        3,
        True,
        1.0,
    )


def test_the_events_of_changes_are_each_record_as_it_is_at_one_time():
    """`Batch.changes` keeps its events as its records and a time; read, they are
    the `EventRecord`s of each run record, then each step record."""
    run = RunRecord("r", "w", "h", RunStatus.FAILED, {}, 1.0, error="boom")
    steps = [
        StepRecord("r", "a", 1, StepStatus.COMPLETED, 1.0),
        StepRecord("r", "b", 2, StepStatus.FAILED, 1.0, error="bad"),
    ]
    batch = Batch.changes(runs=[run], steps=steps, at=5.0)
    expected = [
        EventRecord("r", "failed", 5.0, error="boom"),
        EventRecord("r", "completed", 5.0, "a", 1),
        EventRecord("r", "failed", 5.0, "b", 2, "bad"),
    ]
    assert list(batch.events) == expected and batch.events == expected
    assert batch == Batch.changes(runs=[run], steps=steps, at=5.0)
    assert len(batch.events) == 3 and batch.events[1] == expected[1]
    assert batch.events[1:] == expected[1:]
    assert [e.event for e in batch.events] == ["run_failed", "step_completed", "step_failed"]
    assert batch.derived_events is batch.events
    assert batch.events.run_ids() == {"r"}  # type: ignore[attr-defined]


def test_events_not_of_the_batch_own_records_are_not_derived():
    """Only events made from the batch's own runs and steps may be written from
    their rows; any others are written one by one."""
    step = StepRecord("r", "a", 1, StepStatus.RUNNING, 1.0)
    other = ChangeEvents((), [step], 2.0)
    assert Batch(steps=[step], events=other).derived_events is None
    assert Batch(events=list(Batch.changes(steps=[step]).events)).derived_events is None
    assert not Batch.changes() and Batch.changes().derived_events is not None


def test_changes_are_of_the_records_as_given_not_as_a_list_changed_later():
    steps = [StepRecord("r", "a", 1, StepStatus.RUNNING, 1.0)]
    batch = Batch.changes(steps=steps, at=5.0)
    steps.append(StepRecord("r2", "b", 1, StepStatus.FAILED, 1.0, error="late"))
    assert len(batch.steps) == 1 and [e.step_id for e in batch.events] == ["a"]
    assert batch.derived_events is batch.events


def test_a_change_of_no_known_status_is_refused_when_made():
    with pytest.raises(ValueError, match="bogus"):
        Batch.changes(steps=[StepRecord("r", "a", 1, "bogus", 1.0)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bogus"):
        ChangeEvents([RunRecord("r", "w", "h", "bogus", {}, 1.0)], (), 1.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_batch_of_changes_pickles_with_its_events_still_derived(protocol: int):
    batch = Batch.changes(steps=[StepRecord("r", "a", 1, StepStatus.RUNNING, 1.0)], at=5.0)
    back = pickle.loads(pickle.dumps(batch, protocol=protocol))
    assert back == batch and back.derived_events is back.events
