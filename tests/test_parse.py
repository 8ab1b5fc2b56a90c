"""Bad input gets a clear error naming the step and the line, never a deep traceback."""

import pytest

import wfnb
from wfnb.parse import parse_workflow

from .conftest import error_of, wf


def test_a_valid_workflow_keeps_order_lines_and_kinds():
    workflow = wf(
        """
inputs: {limit: 10}
steps:
  fetch:
    http: {url: "https://example.org/items?limit={{ inputs.limit }}", method: GET}
    timeout: 30
    retry: {max_attempts: 3, backoff: 2.0}
  parse:
    needs: [fetch]
    code: parse_items
    with: {body: "{{ steps.fetch.output.body }}"}
  review:
    needs: [parse]
    approval: {prompt: "Load {{ steps.parse.output | length }} items?"}
"""
    )
    assert list(workflow.steps) == ["fetch", "parse", "review"]
    assert [s.kind for s in workflow.steps.values()] == ["http", "code", "approval"]
    assert workflow.line_of("parse") == 8
    assert workflow.steps["fetch"].retry.max_attempts == 3
    assert workflow.steps["fetch"].timeout == 30
    assert workflow.steps["parse"].timeout == 300  # the default


def test_malformed_yaml_names_the_line():
    err = error_of("steps:\n  a: {code: f\n  b: {code: g}\n")
    assert isinstance(err, wfnb.YamlError)
    # libyaml notices at line 3; the `}` is missing on line 2
    assert err.line == 2 and "line 2" in str(err) and "'{' opened on line 2" in str(err)


def test_unknown_step_kind_suggests_the_right_one():
    err = error_of("steps:\n  a: {code: f}\n  b:\n    htp: {url: x}\n")
    assert isinstance(err, wfnb.SchemaError)
    assert (err.step_id, err.line) == ("b", 4)
    assert "'htp'" in str(err) and "did you mean 'http'" in str(err)


def test_two_kinds_in_one_step_are_refused():
    err = error_of("steps:\n  a: {code: f, skill: g}\n")
    assert err.step_id == "a" and "code, skill" in str(err)


def test_unknown_key_and_bad_value_name_step_and_line():
    err = error_of("steps:\n  a: {code: f}\n  b:\n    code: g\n    timeout: -1\n")
    assert (err.step_id, err.line) == ("b", 5)
    assert "timeout" in str(err)
    err = error_of("steps:\n  a:\n    code: f\n    retyr: {max_attempts: 2}\n")
    assert err.step_id == "a" and "unknown key 'retyr'" in str(err) and err.line == 4


def test_cycle_is_printed_in_order():
    err = error_of(
        "steps:\n  a: {code: f, needs: [c]}\n  b: {code: f, needs: [a]}\n  c: {code: f, needs: [b]}\n"
    )
    assert isinstance(err, wfnb.CycleError)
    assert set(err.cycle) == {"a", "b", "c"}
    assert " -> ".join(err.cycle) in str(err)


def test_missing_need_names_it_and_suggests():
    err = error_of("steps:\n  load: {code: f}\n  parse: {code: f, needs: [lod]}\n")
    assert isinstance(err, wfnb.UnknownStepError)
    assert (err.step_id, err.line) == ("parse", 3)
    assert "'lod'" in str(err) and "did you mean 'load'" in str(err)


def test_unknown_step_in_branch_and_loop_lists():
    err = error_of("steps:\n  c: {conditional: {if: 'true', then: [nope]}}\n")
    assert isinstance(err, wfnb.UnknownStepError) and err.step_id == "c"
    err = error_of("steps:\n  l: {loop: {for_each: '[1]', body: [nope]}}\n")
    assert isinstance(err, wfnb.UnknownStepError) and err.step_id == "l"


def test_duplicate_step_ids_are_not_silently_dropped():
    err = error_of("steps:\n  a: {code: f}\n  a: {code: g}\n")
    assert err.line == 3 and "twice" in str(err)


def test_template_syntax_error_is_a_definition_error():
    err = error_of("steps:\n  a:\n    code: f\n    with: {x: '{{ inputs.x '}\n")
    assert isinstance(err, wfnb.TemplateError)
    assert (err.step_id, err.line) == ("a", 2)


def test_reading_a_step_that_is_not_needed_is_refused():
    err = error_of("steps:\n  a: {code: f, with: {x: '{{ steps.b.output }}'}}\n  b: {code: g}\n")
    assert err.step_id == "a" and "add it to `needs`" in str(err)
    err = error_of("steps:\n  a: {code: f, with: {x: '{{ steps.zz.output }}'}}\n")
    assert isinstance(err, wfnb.UnknownStepError)


def test_alias_bomb_is_refused_quickly():
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    # *i expands to 9**9 (387 million) strings: built, it would outlast the suite's
    # timeout (or memory); refused, it costs no more than reading the text.
    text = "\n".join(lines) + "\nsteps: {x: {code: f, with: {v: *i}}}\n"
    err = error_of(text)
    assert isinstance(err, wfnb.YamlError) and "aliases" in str(err)


def test_yaml_12_booleans_keep_step_names_like_no():
    workflow = wf(
        "steps:\n  c: {conditional: {if: 'true', then: [yes], else: [no]}}\n  yes: {code: f}\n  no: {code: f}\n"
    )
    assert set(workflow.steps) == {"c", "yes", "no"}


def test_empty_or_non_mapping_text():
    assert isinstance(error_of(""), wfnb.SchemaError)
    assert isinstance(error_of("- a\n- b\n"), wfnb.SchemaError)
    assert "at least one step" in str(error_of("steps: {}\n"))


def test_overrides_win_and_line_offset_shifts_lines():
    workflow = parse_workflow(
        "timeout: 5\nsteps:\n  a: {code: f}\n", name="w", timeout=60, concurrency=2
    )
    assert workflow.timeout == 60 and workflow.concurrency == 2
    assert "timeout: 60" in workflow.to_yaml()  # what is stored is what runs
    plain = parse_workflow("timeout: 5\nsteps:\n  a: {code: f}\n", name="w")
    assert plain.definition_hash != workflow.definition_hash
    err = error_of("steps:\n  a: {code: f, needs: [b]}\n", line_offset=1)
    assert err.line == 3


def test_python_construction_matches_yaml():
    step = wfnb.Step(id="a", code=print, needs="b")
    assert step.kind == "code" and step.needs == ["b"]
    workflow = wfnb.Workflow(name="py", steps=[wfnb.Step(id="b", code="f"), step])
    assert "code: print" in workflow.to_yaml()
    assert (
        workflow.definition_hash
        == wfnb.Workflow(name="py", steps=[wfnb.Step(id="b", code="f"), step]).definition_hash
    )


def test_values_are_those_of_yaml_and_unsafe_tags_name_the_line():
    # Built in one walk over libyaml's nodes: numbers, nulls, merge keys and shared
    # anchors come out as PyYAML's safe constructor makes them.
    workflow = wf(
        "inputs: &b {n: 3, f: 1.5, z: null, ok: true, s: '7'}\n"
        "steps:\n  a: {code: f, with: {<<: *b, extra: [1, *b]}}\n"
    )
    assert workflow.steps["a"].with_ == {
        "n": 3, "f": 1.5, "z": None, "ok": True, "s": "7",
        "extra": [1, {"n": 3, "f": 1.5, "z": None, "ok": True, "s": "7"}],
    }  # fmt: skip
    err = error_of("steps:\n  a: {code: f}\n  b: !!python/object:os.system {}\n")
    assert isinstance(err, wfnb.YamlError) and err.line == 3


def test_a_large_parse_sets_off_no_cyclic_collection_and_leaves_the_collector_as_it_was():
    # Half of a 10,000-step parse was full collections over its own node tree
    # (benchmarks/bench_parse.py); the collector now rests while a text is parsed.
    import gc

    text = "steps:\n" + "".join(
        f"  s{i}: {{code: f{', needs: [s' + str(i - 1) + ']' if i else ''}}}\n" for i in range(3000)
    )
    collections = []

    def count(phase, info):
        if phase == "start":
            collections.append(info["generation"])

    gc.callbacks.append(count)
    try:
        wfnb.Workflow.from_yaml(text, name="big")
        assert gc.isenabled()
        # Before: 201 collections, 2 of them full. Now at most the one that the
        # first allocation after the parse sets off.
        assert len(collections) <= 1 and 2 not in collections
        gc.disable()
        try:
            wfnb.Workflow.from_yaml(text, name="big")
            assert not gc.isenabled()  # a caller's choice is kept
        finally:
            gc.enable()
        with pytest.raises(wfnb.DefinitionError):
            wfnb.Workflow.from_yaml(text + "  bad: {code: f, needs: [nope]}\n", name="bad")
        assert gc.isenabled()
    finally:
        gc.callbacks.remove(count)
