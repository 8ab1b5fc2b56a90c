"""From the YAML of a `%%workflow` cell to a checked `Workflow`, and back.

Every failure is a `DefinitionError` that names the step and the line, because the
person reading it is looking at the cell, not at a traceback. The YAML is composed
to a node tree first (that is where the line numbers live), checked for duplicate
keys (YAML would silently keep the last one, dropping a step) and for alias bombs
(a few lines of anchors can expand to billions of nodes), and only then built.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from wfnb import template
from wfnb.dag import build_plan
from wfnb.errors import DefinitionError, SchemaError, YamlError, did_you_mean
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

MAX_SOURCE_CHARS = 1_000_000
#: nodes that aliases add beyond the text's own (a node reached through an alias
#: again counts its whole subtree): what an alias bomb inflates, and only that
MAX_EXPANDED_NODES = 100_000
#: mappings and sequences inside each other
MAX_DEPTH = 64
# libyaml's composer recurses on the C stack: ~10,000 levels exhaust a thread's
# 8 MB and kill the process (SIGSEGV), which no `except` can catch. Texts that
# *could* nest deeper than this (bounded cheaply below) are measured first from
# libyaml's events, which need no recursion; 1,000 levels fit in ~1 MB of stack.
_SAFE_TO_COMPOSE = 1_000


# libyaml's C parser composes the node tree (with line numbers) ~10x faster than
# PyYAML's pure-Python one; a 10,000-step workflow is read in tenths of a second
# instead of seconds. The pure-Python loader stays the fallback where PyYAML was
# built without libyaml.
_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[misc]
    """SafeLoader with YAML 1.2 booleans: only true/false, so a step called `yes`,
    `no`, `on` or `off` stays a string (YAML 1.1 would make it a bool). The C
    parser asks this (Python) resolver for every plain scalar's tag, so the rule
    holds with either parser."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def parse_workflow(
    text: str | bytes, *, name: str, line_offset: int = 0, **overrides: Any
) -> Workflow:
    """Parse, validate, compile templates and plan; ``overrides`` (``timeout``,
    ``concurrency``, ``schedule``, ...) win over the YAML, as magic options do.
    ``line_offset`` shifts reported lines (a cell's body starts on its line 2).
    ``text`` may be UTF-8 bytes (a file read as such)."""
    if isinstance(text, bytes):
        text = _decode(text, line_offset)
    if len(text) > MAX_SOURCE_CHARS:
        raise YamlError(f"the workflow text is over {MAX_SOURCE_CHARS:,} characters")
    root = _compose(text, line_offset)
    if root is None:
        raise SchemaError("the workflow is empty: write a mapping with a `steps:` key")
    if not isinstance(root, yaml.MappingNode):
        raise SchemaError(
            "the workflow must be a YAML mapping with a `steps:` key",
            line=root.start_mark.line + 1 + line_offset,
        )
    data = _build(root, line_offset)
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


def _decode(data: bytes, line_offset: int) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1 + line_offset
        raise YamlError(
            f"the text is not UTF-8: byte 0x{data[exc.start]:02x} cannot start a character",
            line=line,
        ) from None


def _compose(text: str, line_offset: int) -> yaml.Node | None:
    def line_at(position: int) -> int:
        return text.count("\n", 0, position) + 1 + line_offset

    loader = None
    try:
        if _could_nest_deep(text):
            _check_depth(text, line_offset)
        loader = _Loader(text)
        return loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        raise _yaml_error(exc, text, line_offset) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow
        raise YamlError(
            f"invalid YAML: the character U+{exc.character:04X} is not allowed "
            '(control characters may only be written escaped, as \\x07 in a "string")',
            line=line_at(exc.position),
        ) from None
    except UnicodeEncodeError as exc:  # lone surrogates: bytes decoded with errors=...
        raise YamlError(
            f"the text is not UTF-8: it holds an undecodable byte (U+{ord(text[exc.start]):04X})",
            line=line_at(exc.start),
        ) from None
    except yaml.YAMLError as exc:
        raise YamlError(f"invalid YAML: {exc}") from None
    finally:
        if loader is not None:
            loader.dispose()


# A flow list or mapping on one line with no list, mapping, quote, comment or tag
# inside it (`[a, b]`, `{x: 1}`): the innermost level, wherever it is.
_BLOCK_START = re.compile(r"\n *(?:[-?][ \t]+)*")
# libyaml also breaks lines at CR, NEL, LS and PS
_OTHER_BREAKS = re.compile("[\r\x85\u2028\u2029]")
_LEAF_FLOW = re.compile(r"\[[^\[\]{}'\"#!\n]*\]|\{[^\[\]{}'\"#!\n]*\}")


def _could_nest_deep(text: str) -> bool:
    """An upper bound on the nesting the composer would recurse into. Flow levels
    open with ``[`` or ``{``: all count, except that innermost flow collections
    count as one level in all (no path goes through two of them). Block levels
    are bounded by columns: a nested block collection starts right of its parent,
    at least every other level, so twice the deepest column where a line's
    content starts (after its ``- `` and ``? `` indicators) bounds them."""
    if len(text) < _SAFE_TO_COMPOSE:
        return False
    flow = _LEAF_FLOW.sub("", text)
    flow_levels = flow.count("[") + flow.count("{") + 1
    if any(char in text for char in "\r\x85\u2028\u2029"):
        text = _OTHER_BREAKS.sub("\n", text)
    block_levels = 2 * max(map(len, _BLOCK_START.findall("\n" + text)))
    return flow_levels + block_levels > _SAFE_TO_COMPOSE


def _check_depth(text: str, line_offset: int) -> None:
    """Refuse nesting past `MAX_DEPTH` without recursing (libyaml's events)."""
    loader = _Loader(text)
    opening = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
    closing = (yaml.MappingEndEvent, yaml.SequenceEndEvent)
    depth = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, opening):
                depth += 1
                if depth > MAX_DEPTH:
                    raise YamlError(
                        f"the YAML nests mappings and lists more than {MAX_DEPTH} deep",
                        line=event.start_mark.line + 1 + line_offset,
                    )
            elif isinstance(event, closing):
                depth -= 1
    except yaml.YAMLError:
        pass  # composing reports it, with its line
    finally:
        loader.dispose()


_FLOW_CONTEXTS = {"while parsing a flow mapping": "{", "while parsing a flow sequence": "["}


def _yaml_error(exc: yaml.MarkedYAMLError, text: str, line_offset: int) -> YamlError:
    """libyaml notices an unclosed ``{`` or ``[`` at the next token, often the
    next line; the mistake is on the last line with content before it."""
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else None
    problem = exc.problem or exc.context or "invalid YAML"
    if mark is not None and text[mark.index : mark.index + 1] == "\t":
        problem = "a tab cannot indent YAML (or start a value): use spaces"
    opener = _FLOW_CONTEXTS.get(exc.context or "")
    start, end = exc.context_mark, exc.problem_mark
    if opener and start is not None and end is not None and end.line > start.line:
        lines = text.split("\n", end.line + 1)
        before_token = lines[end.line][: end.column] if end.line < len(lines) else ""
        if not any(char in before_token for char in ":,[]{}\"'#"):  # it starts its line
            line = end.line  # 0-based index of the line above it
            while line > start.line + 1 and not lines[line - 1].split("#", 1)[0].strip():
                line -= 1
            problem = (
                f"the {opener!r} opened on line {start.line + 1 + line_offset} is not "
                f"closed: {problem}"
            )
    elif exc.context == "while scanning a quoted scalar" and start is not None:
        line = start.line + 1
        problem = f"the quote opened on line {line + line_offset} is not closed: {problem}"
    return YamlError(
        f"invalid YAML: {problem}", line=line + line_offset if line is not None else None
    )


_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"


def _build(root: yaml.Node, line_offset: int) -> Any:
    """Build the data of the node tree in one walk that also rejects duplicate keys,
    nesting past `MAX_DEPTH`, and aliases that expand past `MAX_EXPANDED_NODES`.

    Plain strings, mappings and lists (nearly every node of a workflow) are built
    here directly; every other tag (numbers, null, merge keys, ``!!set``, ...) goes
    to PyYAML's own safe constructor, so the values are exactly what it would give.
    A node reached through several aliases is built once; each reuse adds its
    expanded size to what aliases added, and only that is limited, so a large
    workflow written out in full is never refused as a bomb.
    """
    fallback = _Loader("")
    sizes: dict[int, int] = {}  # of mappings and sequences: a scalar counts 1
    values: dict[int, Any] = {}
    visiting: set[int] = set()
    added = [0]  # nodes that alias reuses added
    scalar_node = yaml.ScalarNode

    def line_of(node: yaml.Node) -> int:
        return int(node.start_mark.line) + 1 + line_offset

    def value_of(node: yaml.Node) -> Any:
        if type(node) is not scalar_node:
            return values[id(node)]
        if node.tag == _STR:
            return node.value
        try:
            return fallback.construct_object(node)
        except ValueError as exc:  # an integer of over 4,300 digits
            raise YamlError(f"invalid YAML: {exc}", line=line_of(node)) from None

    def reuse(node: yaml.Node, size: int) -> int:
        added[0] += size
        if added[0] > MAX_EXPANDED_NODES:
            raise YamlError(
                f"the YAML expands to over {MAX_EXPANDED_NODES:,} more nodes through aliases",
                line=line_of(node),
            )
        return size

    def walk(node: yaml.Node, depth: int) -> int:
        """The expanded size of a mapping or sequence node; builds its value."""
        key = id(node)
        if key in sizes:
            return reuse(node, sizes[key])
        if key in visiting:
            raise YamlError("the YAML refers to itself through an alias", line=line_of(node))
        if depth > MAX_DEPTH:
            raise YamlError(
                f"the YAML nests mappings and lists more than {MAX_DEPTH} deep",
                line=line_of(node),
            )
        visiting.add(key)
        total = 1
        plain = True
        deeper = depth + 1
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Node] = {}
            for key_node, value_node in node.value:
                if type(key_node) is scalar_node and key_node.tag != _MERGE:
                    if key_node.value in seen:
                        raise YamlError(
                            f"key {key_node.value!r} appears twice (first on line "
                            f"{line_of(seen[key_node.value])})",
                            line=line_of(key_node),
                        )
                    seen[key_node.value] = key_node
                    total += 1
                else:
                    plain = False
                    total += walk(key_node, deeper) if type(key_node) is not scalar_node else 1
                total += walk(value_node, deeper) if type(value_node) is not scalar_node else 1
            plain = plain and node.tag == _MAP
        else:
            for item in node.value:
                total += walk(item, deeper) if type(item) is not scalar_node else 1
            plain = node.tag == _SEQ
        visiting.discard(key)
        if not plain:
            try:
                values[key] = fallback.construct_object(node, deep=True)
            except ValueError as exc:
                raise YamlError(f"invalid YAML: {exc}", line=line_of(node)) from None
        elif isinstance(node, yaml.MappingNode):
            values[key] = {value_of(k): value_of(v) for k, v in node.value}
        else:
            values[key] = [value_of(item) for item in node.value]
        sizes[key] = total
        return total

    try:
        if type(root) is not scalar_node:
            walk(root, 1)
        return value_of(root)
    except yaml.MarkedYAMLError as exc:  # a tag PyYAML's safe constructor refuses
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 + line_offset if mark is not None else None
        raise YamlError(f"invalid YAML: {exc.problem or exc.context}", line=line) from None


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
