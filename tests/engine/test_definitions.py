"""`Definitions.check_runnable` looks at a callable once per name and `with` keys."""

import pytest

import wfnb
from wfnb.backends.local import LocalBackend
from wfnb.engine.definitions import Definitions


def one(x):
    return x


def two(x, y):
    return x + y


def _workflow(text: str) -> wfnb.Workflow:
    return wfnb.Workflow.from_yaml(text, name="checked")


FAN = "steps:\n" + "".join(f"  s{i}: {{code: one, with: {{x: {i}}}}}\n" for i in range(50))


def test_steps_that_name_one_callable_with_the_same_keys_are_checked_once():
    definitions = Definitions({"one": one})
    text = FAN + "  t: {code: one, with: {x: 1, y: 2}}\n  u: {code: one, with: {x: 3}}\n"
    assert definitions.steps_to_check(_workflow(text)) == ["s0", "t"]


def test_a_later_step_with_other_keys_is_still_refused():
    definitions = Definitions({"one": one})
    workflow = _workflow(FAN + "  t: {code: one, with: {x: 1, y: 2}}\n")
    with pytest.raises(wfnb.DefinitionError) as info:
        definitions.check_runnable(workflow, LocalBackend())
    assert info.value.step_id == "t"


def test_a_later_step_naming_a_missing_callable_is_still_refused():
    definitions = Definitions({"one": one, "two": two})
    workflow = _workflow(FAN + "  t: {code: three, with: {x: 1}}\n")
    with pytest.raises(wfnb.UnknownCallableError) as info:
        definitions.check_runnable(workflow, LocalBackend())
    assert info.value.step_id == "t"
    definitions.check_runnable(_workflow(FAN), LocalBackend())  # and the rest passes


def test_the_namespace_is_read_again_at_each_check():
    namespace = {"one": one}
    definitions = Definitions(namespace)
    workflow = _workflow(FAN)
    definitions.check_runnable(workflow, LocalBackend())
    del namespace["one"]
    with pytest.raises(wfnb.UnknownCallableError):
        definitions.check_runnable(workflow, LocalBackend())
