"""Starting real child processes on a real DuckDB file."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("_child.py")


def spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen(
        [sys.executable, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
    )


def spawn_child(mode: str, db: Path, arg: str | None = None) -> subprocess.Popen[str]:
    return spawn(str(CHILD), mode, str(db), *([arg] if arg is not None else []))


def read_line(proc: subprocess.Popen[str], prefix: str) -> str:
    """The next stdout line starting with ``prefix``; fails with the child's stderr."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(prefix):
            return line.strip()
    stderr = proc.stderr.read() if proc.stderr else ""
    raise AssertionError(f"child ended without {prefix!r}: {stderr}")


def tell(proc: subprocess.Popen[str], line: str = "go") -> None:
    """Send a child waiting on its stdin (``hold-until-told``) its cue; a child
    already gone needs none."""
    assert proc.stdin is not None
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
