"""Sandboxed Jinja2 templates and expressions.

Templates see ``inputs``, ``steps.<id>.output``, ``run``, ``env`` (only the
variables the workflow allows), ``secrets`` and, inside loop bodies, ``loop``.
A value that is exactly one ``{{ expr }}`` keeps the type of ``expr`` (a list stays
a list), which is what a user passing outputs between steps expects; anything else
renders to a string. Templates compile once (parse time validates them, a cache
serves the run), and a name that is undefined when a step runs raises
`TemplateRenderError` naming it, instead of rendering an empty string.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, UndefinedError, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from wfnb.errors import TemplateError, TemplateRenderError


class _Environment(ImmutableSandboxedEnvironment):
    """``a.items`` on a mapping means its ``items`` key, not ``dict.items``: step
    outputs are JSON-like data, and their keys are what users mean."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping):
            try:
                return obj[attribute]
            except (KeyError, TypeError):
                pass
        return super().getattr(obj, attribute)


_ENV = _Environment(undefined=StrictUndefined, autoescape=False)
_SINGLE_EXPR = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _bare_expression(text: str) -> str | None:
    """The inner expression of a value that is exactly one ``{{ ... }}``."""
    match = _SINGLE_EXPR.match(text)
    if match is None or "{{" in match["expr"] or "}}" in match["expr"]:
        return None
    return match["expr"]


@functools.lru_cache(maxsize=4096)
def _compile(text: str, as_expression: bool) -> Callable[[Mapping[str, Any]], Any]:
    expr = _bare_expression(text)
    if as_expression or expr is not None:
        compiled = _ENV.compile_expression(
            expr if expr is not None else text, undefined_to_none=False
        )

        def evaluate(scope: Mapping[str, Any]) -> Any:
            value = compiled(**scope)
            if isinstance(value, Undefined):  # a native value must not be a silent hole
                value._fail_with_undefined_error()
            return value

        return evaluate
    template = _ENV.from_string(text)
    return template.render


def compile_value(value: Any, *, expression: bool = False, step_id: str | None = None) -> None:
    """Compile every template inside ``value`` (nested dicts/lists), raising
    `TemplateError` for syntax errors. ``expression`` marks an EXPR field
    (``if``, ``while``), where a bare ``x > 3`` is accepted too."""
    for text in _strings(value):
        if expression or is_template(text):
            try:
                _compile(text, expression)
            except TemplateSyntaxError as exc:
                raise TemplateError(f"template {text!r}: {exc.message}", step_id=step_id) from None


def render(
    value: Any, scope: Mapping[str, Any], *, step_id: str | None = None, expression: bool = False
) -> Any:
    """Render every template inside ``value`` against ``scope``; plain values pass."""
    if isinstance(value, str):
        if not (expression or is_template(value)):
            return value
        try:
            return _compile(value, expression)(scope)
        except UndefinedError as exc:
            raise TemplateRenderError(
                f"template {value!r}: {exc.message} (defined here: {', '.join(sorted(scope))})",
                step_id=step_id,
            ) from None
        except SecurityError as exc:
            raise TemplateRenderError(
                f"template {value!r} is not allowed: {exc}", step_id=step_id
            ) from None
        except TemplateSyntaxError as exc:
            raise TemplateRenderError(
                f"template {value!r}: {exc.message}", step_id=step_id
            ) from None
        except Exception as exc:
            raise TemplateRenderError(
                f"template {value!r} failed: {type(exc).__name__}: {exc}", step_id=step_id
            ) from None
    if isinstance(value, Mapping):
        return {key: render(item, scope, step_id=step_id) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, scope, step_id=step_id) for item in value]
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


#: what ``steps.ID`` holds in a template's scope
STEP_FIELDS = ("output", "status")


@dataclass
class References:
    """The names a template reads from ``steps`` and ``inputs``, found in its syntax
    tree (attribute access or a constant subscript), for checks at definition time."""

    steps: set[str] = field(default_factory=set)
    #: (step id, field) for ``steps.ID.FIELD``
    step_fields: set[tuple[str, str]] = field(default_factory=set)
    inputs: set[str] = field(default_factory=set)


def _name_read(node: nodes.Node, root: str) -> str | None:
    """``NAME`` in ``root.NAME`` or ``root['NAME']``, else None."""
    if not isinstance(node, (nodes.Getattr, nodes.Getitem)):
        return None
    inner = node.node
    if not (isinstance(inner, nodes.Name) and inner.name == root):
        return None
    if isinstance(node, nodes.Getattr):
        return node.attr
    if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
        return node.arg.value
    return None


def references(value: Any, *, expression: bool = False) -> References:
    """Everything ``value``'s templates read from ``steps`` and ``inputs``."""
    found = References()
    for text in _strings(value):
        if not (expression or is_template(text)):
            continue
        source = text
        if expression and not is_template(text):
            source = "{{ " + text + " }}"
        try:
            tree = _ENV.parse(source)
        except TemplateSyntaxError:
            continue
        called = {id(call.node) for call in tree.find_all(nodes.Call)}  # inputs.get(...)
        for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
            if id(node) in called:
                continue
            if (step_id := _name_read(node, "steps")) is not None:
                found.steps.add(step_id)
            elif (name := _name_read(node, "inputs")) is not None:
                found.inputs.add(name)
            elif (
                isinstance(node, nodes.Getattr)
                and (step_id := _name_read(node.node, "steps")) is not None
            ):
                found.step_fields.add((step_id, node.attr))
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
