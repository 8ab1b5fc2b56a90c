"""Sandboxed Jinja2 templates and expressions.

Templates see ``inputs``, ``steps.<id>.output``, ``run``, ``env`` (only the
variables the workflow allows), ``secrets`` and, inside loop bodies, ``loop``.
A value that is exactly one ``{{ expr }}`` keeps the type of ``expr`` (a list stays
a list), which is what a user passing outputs between steps expects; anything else
renders to a string. Templates compile once (parse time validates them, a cache
serves the run), and a name that is undefined when a step runs raises
`TemplateRenderError` naming it, instead of rendering an empty string.

This module decides what is a template and walks values; Jinja2 itself (the
bounded sandbox, `wfnb.sandbox`) loads with the first template met, so a workflow
without templates never loads it (`_sandbox`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from wfnb.errors import TemplateRenderError

#: what ``steps.ID`` holds in a template's scope
STEP_FIELDS = ("output", "status")


def _sandbox() -> ModuleType:
    """`wfnb.sandbox`, imported on first use: the one place Jinja2 gets loaded."""
    from wfnb import sandbox

    return sandbox


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def compile_value(value: Any, *, expression: bool = False, step_id: str | None = None) -> None:
    """Compile every template inside ``value`` (nested dicts/lists), raising
    `TemplateError` for syntax errors. ``expression`` marks an EXPR field
    (``if``, ``while``), where a bare ``x > 3`` is accepted too."""
    for text in _strings(value):
        if expression or is_template(text):
            _sandbox().check(text, expression=expression, step_id=step_id)


def render(
    value: Any, scope: Mapping[str, Any], *, step_id: str | None = None, expression: bool = False
) -> Any:
    """Render every template inside ``value`` against ``scope``; plain values pass
    (dicts and lists as copies). One call (with everything inside ``value``)
    shares one budget of work (`wfnb.sandbox`'s limits)."""
    return _render(value, scope, step_id, expression, [0])


def _render(
    value: Any, scope: Mapping[str, Any], step_id: str | None, expression: bool, work: list[int]
) -> Any:
    if isinstance(value, str):
        if not (expression or is_template(value)):
            return value
        return _sandbox().render_text(
            value, scope, step_id=step_id, expression=expression, work=work
        )
    if isinstance(value, Mapping):
        return {key: _render(item, scope, step_id, False, work) for key, item in value.items()}
    if isinstance(value, list):
        return [_render(item, scope, step_id, False, work) for item in value]
    return value


def truthy(value: Any, scope: Mapping[str, Any], *, step_id: str | None = None) -> bool:
    """Evaluate an EXPR field (``if``, ``while``) to a bool."""
    result = render(value, scope, step_id=step_id, expression=True)
    if isinstance(result, str):
        return result.strip().lower() not in ("", "false", "0", "no", "none")
    try:
        return bool(result)
    except Exception as exc:  # e.g. a numpy array: "the truth value ... is ambiguous"
        raise TemplateRenderError(
            f"{value!r} has no truth value ({type(result).__name__}): {type(exc).__name__}: {exc}",
            step_id=step_id,
        ) from exc


@dataclass
class References:
    """The names a template reads from ``steps`` and ``inputs``, found in its syntax
    tree (attribute access or a constant subscript), for checks at definition time."""

    steps: set[str] = field(default_factory=set)
    #: (step id, field) for ``steps.ID.FIELD``
    step_fields: set[tuple[str, str]] = field(default_factory=set)
    inputs: set[str] = field(default_factory=set)


def references(value: Any, *, expression: bool = False) -> References:
    """Everything ``value``'s templates read from ``steps`` and ``inputs``."""
    found = References()
    for text in _strings(value):
        if is_template(text):
            _sandbox().read_names(text, found)
        elif expression:
            _sandbox().read_names("{{ " + text + " }}", found)
    return found


def referenced_steps(value: Any, *, expression: bool = False) -> set[str]:
    """Step ids a template reads through ``steps.ID`` or ``steps['ID']``; used by the
    planner to insist that a step only reads outputs of steps it needs."""
    return references(value, expression=expression).steps


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)
