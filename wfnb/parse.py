"""From the YAML of a `%%workflow` cell to a checked `Workflow`, and back.

Every failure is a `DefinitionError` that names the step and the line, because the
person reading it is looking at the cell, not at a traceback. `wfnb.yaml_nodes`
reads the text into a node tree (where the line numbers live) and its plain data,
under the guards untrusted YAML needs; this module turns those into a `Workflow`
and points pydantic's, the templates' and the planner's complaints into the cell.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from wfnb import template
from wfnb.dag import build_plan
from wfnb.errors import DefinitionError, SchemaError, did_you_mean
from wfnb.model import (
    MAX_SECONDS,
    AgentSpec,
    ApprovalSpec,
    ConditionalSpec,
    HttpSpec,
    LoopSpec,
    Step,
    Workflow,
    install_codec,
)
from wfnb.yaml_nodes import build_data, compose, decode


def parse_workflow(
    text: str | bytes, *, name: str, line_offset: int = 0, **overrides: Any
) -> Workflow:
    """Parse, validate, compile templates and plan; ``overrides`` (``timeout``,
    ``concurrency``, ``schedule``, ...) win over the YAML, as magic options do.
    ``line_offset`` shifts reported lines (a cell's body starts on its line 2).
    ``text`` may be UTF-8 bytes (a file read as such)."""
    with _no_cycle_collection():
        return _parse(text, name, line_offset, overrides)


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Python's cyclic collector is off while a text is parsed. A parse allocates
    a node tree, its plain data and the models (some 20 containers a step), and
    each quarter of growth set off a full collection over all of it: half of a
    10,000-step parse was the collector (measured: 523 ms with it, 270 without,
    against 164 for libyaml composing the same text; `benchmarks/bench_parse.py`).
    What a parse makes is freed by reference counting; the text's size is capped,
    so what the pause may keep for a moment is bounded too."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _parse(text: str | bytes, name: str, line_offset: int, overrides: dict[str, Any]) -> Workflow:
    if isinstance(text, bytes):
        text = decode(text, line_offset)
    root = compose(text, line_offset)
    if root is None:
        raise SchemaError("the workflow is empty: write a mapping with a `steps:` key")
    if not isinstance(root, yaml.MappingNode):
        raise SchemaError(
            "the workflow must be a YAML mapping with a `steps:` key",
            line=root.start_mark.line + 1 + line_offset,
        )
    data = build_data(root, line_offset)
    given = {key: value for key, value in overrides.items() if value is not None}
    data.update(given)
    try:
        workflow = Workflow.from_text(
            {"name": name, **data},
            # The stored definition must be what runs: with overrides, render the model.
            source=None if given else text,
            lines=_step_lines(root, line_offset),
        )
    except ValidationError as exc:
        raise _schema_error(exc, root, line_offset) from None
    compile_templates(workflow)
    build_plan(workflow)
    return workflow


def compile_templates(workflow: Workflow) -> None:
    """Compile every template of every step once, so syntax errors surface now."""
    if workflow.agent is not None:
        template.compile_value(workflow.agent.model_dump())
    for step_id, step in workflow.steps.items():
        try:
            template.compile_value(step.with_, step_id=step_id)
            if step.if_ is not None:
                template.compile_value(step.if_, expression=True, step_id=step_id)
            for value, expression in _spec_templates(step):
                template.compile_value(value, expression=expression, step_id=step_id)
        except DefinitionError as exc:
            exc.line = workflow.line_of(step_id)
            raise type(exc)(exc.reason, step_id=step_id, line=exc.line) from None


def _spec_templates(step: Step) -> Iterator[tuple[Any, bool]]:
    spec = step.spec
    if isinstance(spec, HttpSpec):
        yield [spec.url, spec.headers, spec.params, spec.json_, spec.body], False
    elif isinstance(spec, AgentSpec):
        yield [spec.prompt, spec.system, spec.model, spec.base_url, spec.api_key], False
    elif isinstance(spec, ApprovalSpec):
        yield spec.prompt, False
    elif isinstance(spec, ConditionalSpec):
        yield spec.if_, True
    elif isinstance(spec, LoopSpec):
        yield spec.while_ if spec.while_ is not None else spec.for_each, True


def _mapping_get(node: yaml.Node, key: Any) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(key):
                return value_node
    if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
        return node.value[key]
    return None


def _step_lines(root: yaml.MappingNode, line_offset: int) -> dict[str, int]:
    steps = _mapping_get(root, "steps")
    if not isinstance(steps, yaml.MappingNode):
        return {}
    return {
        str(key_node.value): key_node.start_mark.line + 1 + line_offset
        for key_node, _ in steps.value
        if isinstance(key_node, yaml.ScalarNode)
    }


_FIELD_ALIASES = {"with_": "with", "if_": "if", "else_": "else", "while_": "while", "json_": "json"}


def _schema_error(exc: ValidationError, root: yaml.MappingNode, line_offset: int) -> SchemaError:
    """Turn pydantic's report into one message that points into the cell."""
    messages = []
    first_step: str | None = None
    first_line: int | None = None
    for error in exc.errors():
        loc = [_FIELD_ALIASES.get(str(part), part) for part in error["loc"]]
        if loc and loc[0] == "name":
            messages.append(f"workflow name: {error['msg']}")
            continue
        step_id = str(loc[1]) if len(loc) > 1 and loc[0] == "steps" else None
        path = loc[2:] if step_id is not None else loc
        node: yaml.Node | None = root
        line = root.start_mark.line + 1
        for part in loc:
            node = _mapping_get(node, part) if node is not None else None
            if node is None:
                break
            line = node.start_mark.line + 1
        msg = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "less_than_equal" and error.get("ctx", {}).get("le") == MAX_SECONDS:
            msg += " seconds (30 days)"
        if error["type"] == "extra_forbidden" and path:
            unknown = str(path[-1])
            msg = f"unknown key {unknown!r}{did_you_mean(unknown, _keys_at(error['loc'][:-1]))}"
            path = path[:-1]
        where = ".".join(str(part) for part in path)
        messages.append(f"{where}: {msg}" if where else msg)
        if first_line is None:
            first_step, first_line = step_id, line + line_offset
    extra = f" (and {len(messages) - 3} more)" if len(messages) > 3 else ""
    return SchemaError("; ".join(messages[:3]) + extra, step_id=first_step, line=first_line)


def _keys_at(loc: tuple[Any, ...]) -> list[str]:
    """The keys the model accepts at ``loc`` (a pydantic error location), for the
    "did you mean" of an unknown key."""
    model: Any = Workflow
    parts = list(loc)
    while parts:
        part = parts.pop(0)
        if model is Workflow and part == "steps":
            if not parts:
                return []
            parts.pop(0)  # the step id
            model = Step
            continue
        field = model.model_fields.get(part) or next(
            (f for f in model.model_fields.values() if f.alias == part), None
        )
        if field is None:
            return []
        inner = [a for a in get_args(field.annotation) or (field.annotation,) if _is_model(a)]
        if not inner:
            return []
        model = inner[0]
    return [field.alias or name for name, field in model.model_fields.items() if name != "id"]


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


class _YamlCodec:
    """`Workflow.from_yaml`/`to_yaml`, provided from here so the model has no YAML."""

    def load(self, text: str, *, name: str, **overrides: Any) -> Workflow:
        return parse_workflow(text, name=name, **overrides)

    def dump(self, body: Mapping[str, Any]) -> str:
        return str(yaml.safe_dump(dict(body), sort_keys=False))


install_codec(_YamlCodec())
