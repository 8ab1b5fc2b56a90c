"""Static checks run with the suite, so CI holds them: lint and strict typing."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_is_clean():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "wfnb",
            "tests",
            "benchmarks",
            "examples",
            "notebooks",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_format_leaves_the_code_as_it_is():
    """One layout for all the Python (pyproject's ``[tool.ruff.format]`` says what
    it leaves out, and why)."""
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_strict_is_clean():
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "wfnb"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_one_python_requirement_everywhere_it_is_stated():
    """pyproject's ``requires-python`` is the version ruff and mypy check for, the one
    mybinder builds, and the one the README promises; and nothing in wfnb is left
    guarding for an older Python."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found = re.fullmatch(r">=(3\.\d+)", project["project"]["requires-python"])
    assert found, project["project"]["requires-python"]
    floor = found.group(1)
    assert project["tool"]["ruff"]["target-version"] == "py" + floor.replace(".", "")
    assert project["tool"]["mypy"]["python_version"] == floor
    assert (ROOT / "binder" / "runtime.txt").read_text().strip() == f"python-{floor}"
    assert f"Python {floor} or newer" in (ROOT / "README.md").read_text()
    assert sys.version_info >= tuple(int(part) for part in floor.split("."))
    fallbacks = ("sys.version_info", "asyncio.TimeoutError", '"cancelling"', '"timeout", None')
    for path in sorted((ROOT / "wfnb").rglob("*.py")):
        text = path.read_text()
        assert not [f for f in fallbacks if f in text], path
