"""`skill: NAME[@VERSION]` steps and the ``@wfnb.skill`` registry.

A skill is a callable registered under a name and a version, so a notebook can use
``skill: clean_text`` without the function being in its namespace (import the module
that defines it), and a team can publish a new version without breaking workflows
pinned to the old one (``skill: clean_text@1``). Unpinned names take the highest
version, compared as numbers where they are numbers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from wfnb.model import SkillSpec, Step
from wfnb.steps.base import StepContext

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Skill:
    name: str
    version: str
    fn: Callable[..., Any]
    description: str | None = None


_REGISTRY: dict[str, dict[str, Skill]] = {}


def _version_key(version: str) -> tuple[Any, ...]:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"[.\-]", version))


@overload
def skill(fn: F) -> F: ...
@overload
def skill(
    *, name: str | None = None, version: str = "1", description: str | None = None
) -> Callable[[F], F]: ...
def skill(
    fn: Any = None,
    *,
    name: str | None = None,
    version: str = "1",
    description: str | None = None,
) -> Any:
    """Register a callable as a skill: ``@wfnb.skill`` or ``@wfnb.skill(name=..., version=...)``.
    Registering the same name and version again replaces it (re-running a cell)."""

    def register(target: F) -> F:
        skill_name = name or target.__name__
        doc = description or (target.__doc__ or "").strip().split("\n")[0] or None
        _REGISTRY.setdefault(skill_name, {})[str(version)] = Skill(
            skill_name, str(version), target, doc
        )
        return target

    return register(fn) if fn is not None else register


def find_skill(reference: str) -> Skill | None:
    """``name`` (highest version) or ``name@version``; None on a miss."""
    name, _, version = reference.partition("@")
    versions = _REGISTRY.get(name)
    if not versions:
        return None
    if version:
        return versions.get(version)
    return versions[max(versions, key=_version_key)]


def skills() -> list[Skill]:
    """Every registered skill version, sorted by name then version."""
    return sorted(
        (s for versions in _REGISTRY.values() for s in versions.values()),
        key=lambda s: (s.name, _version_key(s.version)),
    )


async def execute(step: Step, ctx: StepContext) -> Any:
    spec = step.spec
    assert isinstance(spec, SkillSpec)
    found = find_skill(spec.target)
    if found is None:
        from wfnb.errors import UnknownCallableError

        raise UnknownCallableError(f"no skill registered as {spec.target!r}", step_id=step.id)
    kwargs = ctx.render(step.with_) if step.with_ else {}
    return await ctx.runtime.call(found.fn, kwargs, ctx)
