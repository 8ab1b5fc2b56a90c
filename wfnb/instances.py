"""Loop-instance ids: a step inside loop iterations runs once per iteration, and
each run of it is recorded under its own id, ``b[0,2]`` (step ``b``, iteration 2
of the loop inside iteration 0 of the outer loop). A top-level step's id is bare.

A leaf, so the run, the engine and the notebook read these ids one way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def instance_id(step_id: str, index: tuple[int, ...]) -> str:
    """``("b", (0, 2))`` -> ``b[0,2]``; ``("b", ())`` -> ``b``."""
    if not index:
        return step_id
    return f"{step_id}[{','.join(map(str, index))}]"


def base_id(instance: str) -> str:
    """``b[0,2]`` -> ``b``: the step an instance id is of."""
    return instance.partition("[")[0]


def iteration_index(instance: str) -> tuple[int, ...]:
    """``b[0,2]`` -> ``(0, 2)``; ``()`` for a top-level step."""
    inner = instance.partition("[")[2].rstrip("]")
    return tuple(int(part) for part in inner.split(",")) if inner else ()


def step_outputs(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """Outputs by step id, as results and the steps after a loop see them: a loop
    body step by its bare id, with its last iteration's output."""
    by_step: dict[str, Any] = {}
    indexed: list[tuple[str, Any]] = []
    for key, value in outputs.items():
        if "[" in key:
            indexed.append((key, value))
        else:
            by_step[key] = value
    last: dict[str, tuple[int, ...]] = {}
    for instance, value in indexed:
        base, index = base_id(instance), iteration_index(instance)
        if index and index >= last.get(base, index):
            last[base] = index
            by_step[base] = value
    return by_step
