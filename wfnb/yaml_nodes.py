"""YAML text to a node tree with line numbers, and that tree to plain data.

The reading layer under `wfnb.parse`: it knows YAML, not workflows. Every failure
is a `YamlError` with the line, because the tree is where the line numbers live.
The guards are here because the text is untrusted: a size cap, nesting refused
before libyaml's recursive composer can crash the process, duplicate keys refused
(YAML would silently keep the last one, dropping a step), and alias bombs refused
(a few lines of anchors can expand to billions of nodes).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from wfnb.errors import YamlError

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


def decode(data: bytes, line_offset: int) -> str:
    """UTF-8 bytes to text; an undecodable byte is a `YamlError` with its line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1 + line_offset
        raise YamlError(
            f"the text is not UTF-8: byte 0x{data[exc.start]:02x} cannot start a character",
            line=line,
        ) from None


def compose(text: str, line_offset: int) -> yaml.Node | None:
    """The node tree of ``text`` (None if it holds no document), its lines shifted
    by ``line_offset``; refuses texts over `MAX_SOURCE_CHARS` and nesting past
    `MAX_DEPTH` before composing, so the recursive composer never runs out of stack."""
    if len(text) > MAX_SOURCE_CHARS:
        raise YamlError(f"the workflow text is over {MAX_SOURCE_CHARS:,} characters")

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
                _refuse_nesting(depth, event.start_mark, line_offset)
            elif isinstance(event, closing):
                depth -= 1
    except yaml.YAMLError:
        pass  # composing reports it, with its line
    finally:
        loader.dispose()


def _refuse_nesting(depth: int, mark: yaml.Mark, line_offset: int) -> None:
    """The one nesting rule, for both the event scan and the walk that builds the
    data: ``depth`` counts the mappings and lists around the one at ``mark``."""
    if depth > MAX_DEPTH:
        raise YamlError(
            f"the YAML nests mappings and lists more than {MAX_DEPTH} deep",
            line=mark.line + 1 + line_offset,
        )


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


def build_data(root: yaml.Node, line_offset: int) -> Any:
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
        _refuse_nesting(depth, node.start_mark, line_offset)
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
