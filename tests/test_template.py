import pytest

import wfnb
from wfnb import template

SCOPE = {
    "inputs": {"n": 3, "names": ["a", "b"]},
    "steps": {"fetch": {"output": {"items": [1, 2, 3], "total": 6}}},
    "run": {"id": "r1"},
}


def test_a_single_expression_keeps_its_type():
    assert template.render("{{ steps.fetch.output.items }}", SCOPE) == [1, 2, 3]
    assert template.render("{{ inputs.n }}", SCOPE) == 3
    assert template.render("  {{ inputs.n * 2 }} ", SCOPE) == 6


def test_mixed_text_renders_a_string_and_nested_values_render():
    assert template.render("run {{ run.id }} has {{ inputs.n }}", SCOPE) == "run r1 has 3"
    value = {"a": ["{{ inputs.n }}", "x"], "b": {"c": "{{ run.id }}"}, "d": 4}
    assert template.render(value, SCOPE) == {"a": [3, "x"], "b": {"c": "r1"}, "d": 4}


def test_undefined_names_fail_naming_them():
    with pytest.raises(wfnb.TemplateRenderError) as info:
        template.render("{{ inputs.limit }}", SCOPE, step_id="s")
    assert "limit" in str(info.value) and info.value.step_id == "s"
    with pytest.raises(wfnb.TemplateRenderError, match="nothing"):
        template.render("x {{ nothing }}", SCOPE)


def test_the_sandbox_blocks_python_internals():
    with pytest.raises(wfnb.TemplateRenderError):
        template.render("{{ inputs.__class__.__mro__[1].__subclasses__() }}", SCOPE)


def test_expressions_accept_bare_and_braced_forms():
    assert template.truthy("inputs.n > 2", SCOPE) is True
    assert template.truthy("{{ inputs.n > 5 }}", SCOPE) is False
    assert template.truthy("false", SCOPE) is False


def test_syntax_errors_are_definition_errors():
    with pytest.raises(wfnb.TemplateError):
        template.compile_value({"x": "{{ broken "})


def test_referenced_steps_finds_attribute_and_item_access():
    assert template.referenced_steps("{{ steps.a.output }} {{ steps['b'].output }}") == {"a", "b"}
    assert template.referenced_steps("steps.c.output > 1", expression=True) == {"c"}


def test_bounded_operators_still_do_ordinary_work():
    assert template.render("{{ [1, 2] * 3 }}", SCOPE) == [1, 2, 1, 2, 1, 2]
    assert template.render("{{ '%5d|%-3s' % (inputs.n, 'x') }}", SCOPE) == "    3|x  "
    assert template.render("{{ '{:>4}'.format(inputs.n) }}", SCOPE) == "   3"
    assert template.render("n={{ 'a' ~ inputs.n ~ 'b' }}", SCOPE) == "n=a3b"
    assert template.render("{{ 2 ** 64 }}", SCOPE) == 2**64
    assert template.render("{{ 'x' | center(5) }}", SCOPE) == "  x  "
    assert template.render("{% for i in range(3) %}{{ i }}{% endfor %}", SCOPE) == "012"


def test_one_rendering_has_one_budget_of_work():
    # each range is allowed; together they are over the budget of one rendering
    text = "{% for i in range(200) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    with pytest.raises(wfnb.TemplateRenderError, match="units of work"):
        template.render(text, SCOPE, step_id="s")
    assert template.render("{{ range(100000) | length }}", SCOPE) == 100000  # a fresh budget
