"""`code: NAME` steps: a callable from the notebook (or engine) namespace."""

from __future__ import annotations

import functools
import hashlib
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from wfnb.model import CodeSpec, Step
from wfnb.steps.base import StepContext


def execute(step: Step, ctx: StepContext) -> Awaitable[Any]:
    """The backend's call of the step's callable, as the awaitable itself (not one
    more coroutine around it: a frame less per step). A callable that cannot be
    found or arguments that cannot be rendered raise here, when it is called."""
    spec = step.spec
    assert isinstance(spec, CodeSpec)
    fn = ctx.runtime.resolve_code(spec.target)
    kwargs = ctx.render(step.with_) if step.with_ else {}
    return ctx.runtime.call(fn, kwargs, ctx)


def fingerprint(fn: Callable[..., Any]) -> str:
    """A short hash of a callable's source (its bytecode when the source is not
    available), to notice that a step's code changed between start and resume.
    Memoized per callable: reading source costs ~25 µs a function, far too much
    to pay for every step of every run (redefining a function in a cell makes a
    new function object, so edits are still seen)."""
    try:
        return _memoized_fingerprint(fn)
    except TypeError:  # an unhashable callable object
        return _fingerprint(fn)


def _fingerprint(fn: Callable[..., Any]) -> str:
    target = inspect.unwrap(fn)
    try:
        text = inspect.getsource(target)
    except (OSError, TypeError):
        code = getattr(target, "__code__", None)
        text = repr((code.co_code, code.co_consts)) if code is not None else repr(target)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


_memoized_fingerprint = functools.lru_cache(maxsize=4096)(_fingerprint)
