"""Every example in README.md and docs/*.md runs, and every link points inside the repo.

How a page is read (the conventions are for the docs' authors):

- ```` ```python ```` blocks run in order in one namespace per page, on one event
  loop, so top-level ``await`` works as in a notebook cell. A block without
  ``await`` runs outside the loop (``run_sync`` and ``asyncio.run`` refuse a running
  loop, as in a plain script). A block that uses IPython magics (``%load_ext``) is
  compiled by IPython's transformer; the magics themselves are tested in
  tests/notebook.
- ```` ```yaml ```` blocks must be whole workflows and are parsed with
  `wfnb.Workflow.from_yaml`. When the page's namespace holds an ``engine`` (a
  `wfnb.Engine` the page made in an earlier block) the workflow is also run by it,
  the run's `RunResult` (at its end or first pause) is bound to ``result`` for the
  next block, and its status must be the one the info string names
  (```` ```yaml status=paused ````; default ``completed``). ``name=NAME`` in the info
  string names the workflow (default ``example``), for ``workflow: NAME`` steps.
- A block of any kind whose first line is ``%%workflow NAME ...`` is a notebook cell:
  its YAML body is parsed.
- Anything that cannot run here (shell commands, http/agent steps that need a
  server, sketches) uses another info string: ``text``, ``console``, ``ipython``, or
  none. ``py``, ``python3`` and ``yml`` are refused, so nothing escapes the test.

Each page runs in its own temporary directory with ``WFNB_DB`` pointed into it, so
nothing is written into the repository.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import wfnb

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
IDS = [str(page.relative_to(REPO)) for page in PAGES]

#: Pages linked from these docs that another branch is writing; a link to one is
#: allowed only while the file does not exist (once it does, it is checked as usual).
PENDING_PAGES: set[str] = set()

TESTED = {"python", "yaml"}
REFUSED = {"py", "python3", "yml", "pycon"}


@dataclass
class Block:
    page: Path
    line: int  # the line of the first body line
    lang: str
    attrs: dict[str, str] = field(default_factory=dict)
    body: str = ""

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def blocks_of(page: Path) -> list[Block]:
    """The fenced code blocks of a Markdown page (``` or ~~~ fences)."""
    found: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    opening = re.compile(r"^( {0,3})(`{3,}|~{3,})\s*([^`]*)$")
    i = 0
    while i < len(lines):
        match = opening.match(lines[i])
        if match is None:
            i += 1
            continue
        indent, fence, info = len(match[1]), match[2], match[3].split()
        body: list[str] = []
        i += 1
        start = i + 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][indent:] if lines[i][:indent].isspace() else lines[i])
            i += 1
        i += 1
        attrs = dict(word.split("=", 1) for word in info[1:] if "=" in word)
        found.append(Block(page, start, info[0] if info else "", attrs, "\n".join(body) + "\n"))
    return found


def is_cell_magic(block: Block) -> bool:
    return block.body.lstrip().startswith("%%workflow")


def uses_magics(block: Block) -> bool:
    return any(line.lstrip().startswith("%") for line in block.body.splitlines())


# -- running a page -------------------------------------------------------------------


def run_python(block: Block, ns: dict[str, Any], loop: asyncio.AbstractEventLoop) -> None:
    if uses_magics(block):
        from IPython.core.inputtransformer2 import TransformerManager

        compile(TransformerManager().transform_cell(block.body), block.where, "exec")
        return
    # Padding keeps the page's line numbers in tracebacks.
    source = "\n" * (block.line - 1) + block.body
    code = compile(
        source, str(block.page), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
    )
    if code.co_flags & inspect.CO_COROUTINE:
        loop.run_until_complete(eval(code, ns))
    else:
        exec(code, ns)


def run_yaml(block: Block, ns: dict[str, Any], loop: asyncio.AbstractEventLoop) -> None:
    workflow = wfnb.Workflow.from_yaml(block.body, name=block.attrs.get("name", "example"))
    engine = ns.get("engine")
    if not isinstance(engine, wfnb.Engine):
        return

    async def run() -> wfnb.RunResult:
        handle = await engine.start(workflow)
        return await handle

    result = loop.run_until_complete(run())
    want = block.attrs.get("status", "completed")
    assert result.status.value == want, f"{block.where}: {result.status.value} ({result.error})"
    ns["result"] = result


async def close_everything(ns: dict[str, Any]) -> None:
    for value in list(ns.values()):
        if isinstance(value, wfnb.Engine):
            await value.close()
    for value in list(ns.values()):
        if type(value).__name__ == "DuckDBStore":
            await value.close()
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WFNB_DB", str(tmp_path / "wfnb.duckdb"))
    return tmp_path


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_every_example_runs(page: Path, sandbox: Path) -> None:
    ns: dict[str, Any] = {"__name__": "__docs__"}
    loop = asyncio.new_event_loop()
    try:
        for block in blocks_of(page):
            if is_cell_magic(block):
                continue  # test_workflow_cells_parse
            try:
                if block.lang == "python":
                    run_python(block, ns, loop)
                elif block.lang == "yaml":
                    run_yaml(block, ns, loop)
            except Exception as exc:
                raise AssertionError(f"the example at {block.where} fails: {exc!r}") from exc
    finally:
        loop.run_until_complete(close_everything(ns))
        loop.close()


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_workflow_cells_parse(page: Path) -> None:
    for block in blocks_of(page):
        if is_cell_magic(block):
            head, _, body = block.body.lstrip().partition("\n")
            name = shlex.split(head)[1]
            wfnb.Workflow.from_yaml(body, name=name)


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_no_untested_code_block(page: Path) -> None:
    for block in blocks_of(page):
        assert block.lang not in REFUSED, (
            f"{block.where}: write ```{'yaml' if block.lang == 'yml' else 'python'} (tested) "
            "or ```text (not run)"
        )
        if block.lang == "yaml" and not is_cell_magic(block):
            # A YAML block is a whole workflow, or it is not tested: say ```text.
            assert "steps:" in block.body, f"{block.where}: a yaml block must be a workflow"


def test_the_pages_have_examples() -> None:
    """The parser above finds what it should (a test that finds no blocks tests nothing)."""
    langs = {IDS[i]: {b.lang for b in blocks_of(p)} for i, p in enumerate(PAGES)}
    assert "python" in langs["README.md"]
    assert {"python", "yaml"} <= langs["docs/workflow-yaml.md"]
    assert "python" in langs["docs/python-api.md"]
    assert "python" in langs["docs/store.md"]


def test_a_third_party_store_passes_conformance_as_documented(tmp_path: Path) -> None:
    """docs/store.md's StoreConformance example is a real test module: run it."""
    page = REPO / "docs" / "store.md"
    (block,) = [b for b in blocks_of(page) if "(StoreConformance)" in b.body]
    module = tmp_path / "test_my_store.py"
    module.write_text(block.body, encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(module)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert " passed" in out.stdout


# -- links ----------------------------------------------------------------------------

LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to -."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.M | re.S)
    return {_slug(m[1]) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M)}


def links_of(page: Path) -> list[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.M | re.S)
    return [m[1] for m in LINK.finditer(text)]


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_links_stay_inside_the_repository(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert "../shared" not in text and "/work/shared" not in text
    for target in links_of(page):
        if re.match(r"^[a-z]+:", target):
            continue  # http(s), mailto: not ours to check offline
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.is_relative_to(REPO), f"{page.name}: {target} leaves the repository"
        relative = str(file.relative_to(REPO))
        if relative in PENDING_PAGES and not file.exists():
            continue
        assert file.exists(), f"{page.name}: {target} does not exist"
        if anchor and file.suffix == ".md":
            assert anchor in anchors(file), f"{page.name}: no heading for #{anchor} in {relative}"


def test_the_link_checker_sees_links() -> None:
    readme = links_of(REPO / "README.md")
    assert "docs/workflow-yaml.md" in readme
    assert _slug("Loops: `loop`") == "loops-loop"
