"""The store records: `quick_init` makes them as the dataclass would, only faster."""

import dataclasses

import pytest

from wfnb.model import StepStatus
from wfnb.store.base import CallRecord, EventRecord, StepRecord, quick_init


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
