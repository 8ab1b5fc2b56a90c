"""Jinja2's sandbox, bounded: what `wfnb.template` compiles, renders and reads
templates with.

Its own module so that Jinja2 (≈ 2.3 MB of a process's memory with this
environment, docs/store.md "Memory") loads with the first template a
workflow has, not with ``import wfnb``: a workflow without templates never
loads it. `wfnb.template` imports this module on first use (`wfnb.template._sandbox`);
nothing else does.
"""

from __future__ import annotations

import functools
import math
import re
import string
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, UndefinedError, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.runtime import LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment, safe_range

from wfnb.errors import TemplateError, TemplateRenderError

if TYPE_CHECKING:
    from wfnb.template import References

#: the budget of the `wfnb.template.render` call under way (set around each of
#: its templates by `render_text`), which every limit below charges
_work: ContextVar[list[int] | None] = ContextVar("wfnb_template_work", default=None)
#: the largest string or list a template may make, in characters or items
MAX_VALUE_SIZE = 1_000_000
#: the largest integer a template may make, in bits (about 30,000 digits)
MAX_INT_BITS = 100_000
#: a format width or precision (``"%10d"``, ``"{:>10}"``)
MAX_WIDTH = 10_000
#: what one rendering may do in all: characters and items made (output included),
#: range items made, loop iterations, and items that filters read
MAX_RENDER_WORK = 10_000_000

_SIZED = (str, bytes, list, tuple)
_OUTPUT_CHUNK = 65_536  # template output is charged this many characters at a time
_PRINTF = re.compile(r"%[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_DIGITS = re.compile(r"\d+")


def _spend(size: int, what: str) -> None:
    """Count ``size`` against the value and the rendering's limits; a template
    that would build something huge fails its step instead of the machine."""
    if size > MAX_VALUE_SIZE:
        raise SecurityError(
            f"{what} would make a value of {size:,} characters or items "
            f"(the limit is {MAX_VALUE_SIZE:,})"
        )
    _charge(size)


def _charge(units: int) -> None:
    """Count ``units`` against the rendering's budget only: reading a long step
    output is allowed, doing so without end is not."""
    work = _work.get()
    if work is not None:
        work[0] += units
        if work[0] > MAX_RENDER_WORK:
            raise SecurityError(f"the template did over {MAX_RENDER_WORK:,} units of work")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_product(left: Any, right: Any) -> None:
    if isinstance(left, _SIZED) and _is_int(right):
        _spend(len(left) * max(right, 0), "`*`")
    elif isinstance(right, _SIZED) and _is_int(left):
        _spend(len(right) * max(left, 0), "`*`")
    elif _is_int(left) and _is_int(right):
        _check_bits(abs(left).bit_length() + abs(right).bit_length(), "`*`")


def _check_power(base: Any, exponent: Any) -> None:
    """``b ** e`` has ``floor(e * log2|b|) + 1`` bits (``bit_length(b) * e``
    overstated ``2 ** 60000`` as 120,000 bits)."""
    if _is_int(base) and _is_int(exponent) and abs(base) > 1 and exponent > 0:
        _check_bits(math.floor(math.log2(abs(base)) * exponent) + 1, "`**`")


def _check_bits(bits: int, what: str) -> None:
    if bits > MAX_INT_BITS:
        raise SecurityError(
            f"{what} would make an integer of about {bits:,} bits (the limit is {MAX_INT_BITS:,})"
        )


def _check_printf(text: str) -> None:
    """``%`` formatting with a width or precision that would pad to gigabytes."""
    for match in _PRINTF.finditer(text):
        for part in match.groups():
            if part == "*" or part is not None and int(part) > MAX_WIDTH:
                raise SecurityError(
                    f"a % format width or precision is over {MAX_WIDTH:,} (or given by `*`)"
                )


def _check_format(text: str) -> None:
    """The same for ``str.format`` specs (``"{:999999999}"``)."""
    try:
        fields = list(string.Formatter().parse(text))
    except ValueError:
        return  # str.format reports it
    for _, name, spec, _ in fields:
        if (
            name is not None
            and spec
            and ("{" in spec or any(int(n) > MAX_WIDTH for n in _DIGITS.findall(spec)))
        ):
            raise SecurityError(f"a format width or precision is over {MAX_WIDTH:,}")


def _check_replace(text: Any, old: Any, new: Any, what: str) -> None:
    """What replacing ``old`` by ``new`` in ``text`` would make (an empty ``old``
    matches between every two characters)."""
    _spend(len(text) + text.count(old or text[:0]) * max(len(new) - len(old), 0), what)


def _check_ints(args: tuple[Any, ...], what: str) -> None:
    for value in args:
        if _is_int(value) and value > MAX_VALUE_SIZE:
            raise SecurityError(f"{what}: {value:,} is over the limit of {MAX_VALUE_SIZE:,}")


#: filters whose integer arguments are sizes (a width, a count of parts), so
#: they are checked before the filter runs; other filters' integers are values
_SIZE_ARGUMENTS = frozenset({"center", "indent", "wordwrap", "truncate", "batch", "slice"})
#: filters with checks before they run (the rest are only counted)
_CHECKED_FIRST = _SIZE_ARGUMENTS | {"format", "replace", "join"}
#: what a filter reads, counted by its length (a generator is counted by its consumer)
_READ = (str, bytes, list, tuple, dict, range)


def _check_filter_arguments(name: str, read: Any, values: tuple[Any, ...]) -> None:
    """Sizes, widths and growth a filter would make, checked before it makes them."""
    what = f"the {name} filter"
    if name in _SIZE_ARGUMENTS:
        _check_ints(values, what)
    texts = [value for value in values if isinstance(value, str)]
    if name == "format" and texts:
        _check_printf(texts[0])
    if name == "replace" and len(texts) >= 3:
        text, old, new = texts[:3]
        _check_replace(text, old, new, "replace")
    inserts = texts[1:] if texts and texts[0] is read else texts
    if name in ("join", "indent") and isinstance(read, _READ) and inserts:  # per item/line
        parts = len(read) if name == "join" else str(read).count("\n") + 1
        _spend(len(read) + parts * len(inserts[0]), what)


def _bounded_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """A filter (every filter of the sandbox) bounded: the items it reads count
    against the rendering's budget, sizes it takes are checked before it runs,
    and what it makes (``escape``, ``urlencode``, ``tojson``, ...) is a value
    like any other. (Per call, so kept lean: filters are on the hot path.)"""
    first = 1 if hasattr(fn, "jinja_pass_arg") else 0  # after the context Jinja passes
    checked_first = name in _CHECKED_FIRST
    what = f"the {name} filter"

    @functools.wraps(fn)  # (keeps Jinja's pass_context/pass_eval_context marks)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        read = args[first] if len(args) > first else None
        if isinstance(read, _READ):
            _charge(len(read))
        if checked_first:
            _check_filter_arguments(name, read, (*args, *kwargs.values()))
        result = fn(*args, **kwargs)
        if isinstance(result, _SIZED):
            _spend(len(result), what)
        return result

    return bounded


def _range(*args: int) -> range:
    numbers = safe_range(*args)
    _spend(len(numbers), "range()")
    return numbers


class _CodeGenerator(CodeGenerator):
    """``a ~ b`` concatenates through `_Environment.bounded_concat`, and a ``for``
    loop iterates through `_Environment.counted_iter`, so both are counted.
    (Jinja2 allows no new node types, so a loop's iterable is known by its id.)"""

    _loop_iterables: set[int] | None = None

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        if self._loop_iterables is None:
            self._loop_iterables = set()
        self._loop_iterables.add(id(node.iter))
        super().visit_For(node, frame)

    def visit(self, node: nodes.Node, *args: Any, **kwargs: Any) -> Any:
        if self._loop_iterables is None or id(node) not in self._loop_iterables:
            return super().visit(node, *args, **kwargs)
        self.write("environment.counted_iter(")
        super().visit(node, *args, **kwargs)
        self.write(")")
        return None

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _Environment(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox, plus bounds: ``*``, ``**``, ``%``, ``+``, ``~``,
    ``range``, ``str`` methods and every filter check the size of what they would
    make, and one rendering has a budget of work (see `_spend`) that its output,
    its loop iterations and the items its filters read spend too.

    ``a.items`` on a mapping means its ``items`` key, not ``dict.items``: step
    outputs are JSON-like data, and their keys are what users mean."""

    code_generator_class = _CodeGenerator
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping):
            try:
                return obj[attribute]
            except (KeyError, TypeError):
                pass
        return super().getattr(obj, attribute)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            _check_product(left, right)
        elif operator == "**":
            _check_power(left, right)
        elif operator == "%" and isinstance(left, str):
            _check_printf(left)
        elif operator == "+" and isinstance(left, _SIZED) and isinstance(right, _SIZED):
            _spend(len(left) + len(right), "`+`")
        return super().call_binop(context, operator, left, right)

    def concat(self, parts: Iterable[str]) -> str:
        """Template output (and macro and block bodies): Jinja joins it here, and
        each part counts against the budget before it is kept."""
        kept, pending = [], 0
        for part in parts:
            kept.append(part)
            pending += len(part)
            if pending > _OUTPUT_CHUNK:  # (one charge per part costs a call each)
                _charge(pending)
                pending = 0
        _charge(pending)
        return "".join(kept)

    def counted_iter(self, iterable: Any) -> Any:
        """What a ``for`` loop walks: every iteration counts against the budget
        (a sized value up front, anything else item by item)."""
        try:
            size = len(iterable)
        except TypeError:
            return self._count_each(iterable)
        _charge(size)
        return iterable

    @staticmethod
    def _count_each(iterable: Iterable[Any]) -> Iterator[Any]:
        for item in iterable:
            _charge(1)
            yield item

    def bounded_concat(self, items: tuple[Any, ...]) -> str:
        texts = [str(item) for item in items]
        _spend(sum(map(len, texts)), "`~`")
        return "".join(texts)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            _check_format(value.__self__)
        return wrapped

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        if isinstance(__obj, LoopContext) and args:  # loop(children) in a recursive loop
            args = (__self.counted_iter(args[0]), *args[1:])
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, _SIZED):  # "x".center(10**9), "ab".replace(...)
            _check_ints((*args, *kwargs.values()), f"{type(owner).__name__} method")
            if getattr(__obj, "__name__", "") == "replace" and len(args) >= 2:
                old, new = args[0], args[1]
                if isinstance(old, _SIZED) and isinstance(new, _SIZED):
                    _check_replace(owner, old, new, "replace()")
        result = super().call(__context, __obj, *args, **kwargs)
        if isinstance(result, _SIZED) and owner is not None:
            _spend(len(result), "a method")
        return result


_ENV = _Environment(undefined=StrictUndefined, autoescape=False)
# No lipsum (it builds text), cycler, joiner or namespace (mutable state, the
# ingredient of loops that grow without bound); `range` counts what it makes.
for _name in ("lipsum", "cycler", "joiner", "namespace"):
    del _ENV.globals[_name]
_ENV.globals["range"] = _range
for _name, _filter in list(_ENV.filters.items()):
    _ENV.filters[_name] = _bounded_filter(_name, _filter)
_SINGLE_EXPR = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)


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


def check(text: str, *, expression: bool, step_id: str | None) -> None:
    """Compile ``text`` (kept for the run), raising `TemplateError` for a syntax error."""
    try:
        _compile(text, expression)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template {text!r}: {exc.message}", step_id=step_id) from None


def render_text(
    text: str,
    scope: Mapping[str, Any],
    *,
    step_id: str | None,
    expression: bool,
    work: list[int],
) -> Any:
    """Render one template, charging ``work`` (the budget its `render` call
    shares); whatever goes wrong is a `TemplateRenderError`."""
    token = _work.set(work)
    try:
        return _compile(text, expression)(scope)
    except UndefinedError as exc:
        raise TemplateRenderError(
            f"template {text!r}: {exc.message} (defined here: {', '.join(sorted(scope))})",
            step_id=step_id,
        ) from None
    except SecurityError as exc:
        raise TemplateRenderError(
            f"template {text!r} is not allowed: {exc}", step_id=step_id
        ) from None
    except TemplateSyntaxError as exc:
        raise TemplateRenderError(f"template {text!r}: {exc.message}", step_id=step_id) from None
    except Exception as exc:
        raise TemplateRenderError(
            f"template {text!r} failed: {type(exc).__name__}: {exc}", step_id=step_id
        ) from None
    finally:
        _work.reset(token)


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


def read_names(source: str, found: References) -> None:
    """Add what the template ``source`` reads from ``steps`` and ``inputs`` to
    ``found`` (nothing, if it does not parse: compiling it reports that)."""
    try:
        tree = _ENV.parse(source)
    except TemplateSyntaxError:
        return
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
