import subprocess
import sys
from pathlib import Path

import pytest

import wfnb
from wfnb import template

ROOT = Path(__file__).resolve().parents[1]

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


def test_every_filter_is_bounded_and_integers_are_sizes_only_where_they_are():
    for text in (
        "{{ ('<' * 999999) | escape }}",  # 3,999,996 characters before
        "{{ ('é' * 999999) | urlencode }}",
        "{{ ('<' * 999999) | tojson }}",
        "{{ range(100000) | join('x' * 999999) }}",  # a separator per item: 100 GB before
        "{{ ('\\n' * 999999) | indent('x' * 999999) }}",  # an indent per line
    ):
        with pytest.raises(wfnb.TemplateRenderError, match="would make a value"):
            template.render(text, SCOPE, step_id="s")
    ordinary = {
        "{{ '%d' | format(1700000000) }}": "1700000000",  # a value, not a width: refused before
        "{{ 'a<b' | escape }}": "a&lt;b",
        "{{ inputs.names | map('upper') | join('-') }}": "A-B",
        "{{ 'a\\nb' | indent('> ', first=True) }}": "> a\n> b",
    }
    assert {text: template.render(text, SCOPE) for text in ordinary} == ordinary


def test_template_output_counts_against_the_budget():
    # each urlencode makes 960,000 characters (allowed); twenty of them do not fit
    text = "{% set s = 'é' * 160000 %}{% for i in range(20) %}{{ s | urlencode }}{% endfor %}"
    with pytest.raises(wfnb.TemplateRenderError, match="units of work"):
        template.render(text, SCOPE, step_id="s")
    macro = "{% macro m() %}{{ 'x' * 100000 }}{% endmacro %}"
    with pytest.raises(wfnb.TemplateRenderError, match="units of work"):
        template.render(macro + "{% for i in range(200) %}{{ m() }}{% endfor %}", SCOPE)
    assert (
        len(template.render(macro + "{% for i in range(20) %}{{ m() }}{% endfor %}", SCOPE))
        == 2_000_000
    )


def test_power_counts_the_bits_it_makes():
    assert template.render("{{ 2 ** 60000 }}", SCOPE) == 2**60000  # refused as 120,000 bits before
    assert template.render("{{ 2 ** 99999 }}", SCOPE).bit_length() == 100_000
    assert template.render("{{ (-3) ** 3 }} {{ 0 ** 9 }} {{ 1 ** 99999999 }}", SCOPE) == "-27 0 1"
    assert template.render("{{ 2 ** -2 }}", SCOPE) == 0.25
    with pytest.raises(wfnb.TemplateRenderError, match="about 100,001 bits"):
        template.render("{{ 2 ** 100000 }}", SCOPE)
    with pytest.raises(wfnb.TemplateRenderError, match="would make an integer"):
        template.render("{{ 7 ** 100000000 }}", SCOPE)


def test_loop_iterations_count_against_the_budget():
    # 16,000,000 iterations each (small enough to end, uncounted, before the fix)
    long = "{% set s = 'x' * 4000 %}"
    for loops in (
        "{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}",  # empty body: no cost before
        "{% for a in s | map('upper') %}{% for b in s if b %}{% endfor %}{% endfor %}",
        "{% for a in [s] recursive %}{{ loop(s) if loop.depth < 3 }}{% endfor %}",
    ):
        with pytest.raises(wfnb.TemplateRenderError, match="units of work"):
            template.render(long + loops, SCOPE, step_id="s")
    loop = "{% for x in inputs.names if x != 'b' %}{{ loop.index }}{{ x }}{% endfor %}"
    assert template.render(loop, SCOPE) == "1a"


def test_jinja2_loads_with_the_first_template_not_with_import_wfnb() -> None:
    """Jinja2 costs ≈ 2.3 MB of a process's memory (issue 13): values without a
    template render without it; the first template loads it."""
    code = """
import sys
import wfnb
from wfnb import template
loaded = lambda: sorted(m for m in ("jinja2", "wfnb.sandbox") if m in sys.modules)
print(loaded(), template.render({"a": ["x", 1]}, {}), loaded())
print(template.render("{{ n + 1 }}", {"n": 2}), loaded())
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[] {'a': ['x', 1]} []", "3 ['jinja2', 'wfnb.sandbox']"]
