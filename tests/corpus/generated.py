"""Corpus cases too big to keep as files, built when a test runs, and the reading
of every case's header (``# expect: ...`` comment lines on top of its YAML)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

CASES = Path(__file__).parent / "cases"


def case_path(name: str) -> Path:
    return CASES / f"{name}.yaml"


def _ten_megabyte_cell() -> str:
    return "steps:\n  a: {code: f, with: {x: '" + "x" * 10_000_000 + "'}}\n"


def _flow_nesting() -> str:  # killed the interpreter (SIGSEGV) before
    return "steps:\n  a: {code: f, with: {x: " + "[" * 100_000 + "]" * 100_000 + "}}\n"


def _block_nesting() -> str:
    return "steps:\n  a:\n    code: f\n    with:\n      x:\n        " + "- " * 40_000 + "leaf\n"


def _nesting_after(line_break: str) -> Callable[[], str]:
    def build() -> str:  # killed the interpreter before the bound knew these breaks
        return (
            "steps:\n  a:\n    code: f\n    with:\n      x:" + line_break + "- " * 100_000 + "x\n"
        )

    return build


def _twenty_thousand_steps() -> str:  # refused as an alias bomb before
    return "steps:\n  s0: {code: f}\n" + "".join(
        f"  s{i}: {{code: f, needs: [s{i - 1}]}}\n" for i in range(1, 20_000)
    )


#: name -> (builder, expectation); lines count from the text's first line
GENERATED_CASES: dict[str, tuple[Callable[[], str], dict[str, Any]]] = {
    "90-ten-megabyte-cell": (
        _ten_megabyte_cell,
        {"expect": "YamlError", "message": "the workflow text is over 1,000,000 characters"},
    ),
    "91-flow-nesting-100000-deep": (
        _flow_nesting,
        {"expect": "YamlError", "message": "more than 64 deep", "line": 2},
    ),
    "92-block-nesting-40000-deep": (
        _block_nesting,
        {"expect": "YamlError", "message": "more than 64 deep", "line": 6},
    ),
    "94-nesting-after-a-carriage-return": (
        _nesting_after("\r        "),
        {"expect": "YamlError", "message": "more than 64 deep", "line": 6},
    ),
    "95-nesting-after-a-unicode-line-separator": (
        _nesting_after("\u2028        "),
        {"expect": "YamlError", "message": "more than 64 deep", "line": 6},
    ),
    "96-nesting-after-a-next-line": (
        _nesting_after("\x85        "),
        {"expect": "YamlError", "message": "more than 64 deep", "line": 6},
    ),
    "93-twenty-thousand-plain-steps": (
        _twenty_thousand_steps,
        {"expect": "ok", "steps": 20_000, "memory_mb": 400},
    ),
}
GENERATED = {name: build for name, (build, _) in GENERATED_CASES.items()}


def header(name: str) -> dict[str, Any]:
    """A case's expectation: the ``# key: value`` lines that open its file."""
    if name in GENERATED_CASES:
        return dict(GENERATED_CASES[name][1])
    found: dict[str, Any] = {}
    for raw in case_path(name).read_bytes().splitlines():
        line = raw.decode("utf-8", "replace")
        if not line.startswith("# ") or ":" not in line:
            break
        key, _, value = line[2:].partition(":")
        found[key.strip()] = value.strip()
    found = {key: value for key, value in found.items() if value != "-"}
    for key in ("line", "memory_mb"):
        if key in found:
            found[key] = int(found[key])
    stage, _, inputs = found.get("stage", "parse").partition(" ")
    found["stage"] = stage
    if inputs:
        found["inputs"] = yaml.safe_load(inputs)
    return found


def all_cases() -> list[str]:
    return sorted([path.stem for path in CASES.glob("*.yaml")] + list(GENERATED_CASES))
