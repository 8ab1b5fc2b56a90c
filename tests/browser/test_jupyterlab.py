"""notebooks/02-approvals.ipynb in a real JupyterLab, driven as a person would.

One JupyterLab session and one page for the module: the tests are one user's
story, in order (run the workflow and approve it with the mouse; then, in the same
notebook, a failing step; then save, shut down and reopen).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from .conftest import Lab, copy_notebook

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

NOTEBOOK = "02-approvals.ipynb"
#: cells the test appends to its copy of the notebook (see test_failed_step...)
FAILING = [
    "def parse_amounts(text):\n    return [int(word) for word in text.split()]",
    "%%workflow amounts\nsteps:\n  parse: {code: parse_amounts, with: {text: '12 7 twelve'}}",
]
WIDGET = "application/vnd.jupyter.widget-view+json"
WAIT = 90_000  # ms: a kernel starting on a busy 2-core machine


@pytest.fixture(scope="module")
def page(lab: Lab, browser: Any) -> Iterator[Any]:
    copy_notebook(lab, NOTEBOOK, FAILING)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT)
    open_notebook(page, lab)
    yield page
    context.close()


def open_notebook(page: Any, lab: Lab) -> None:
    page.goto(lab.open_url(NOTEBOOK))
    page.locator(".jp-Notebook .jp-Cell").first.wait_for()
    # The toolbar's indicator says idle before the kernel has connected; the status
    # bar's text is the kernel's actual state.
    status = page.locator("#jp-main-statusbar")
    status.get_by_text(re.compile(r"\bIdle\b")).wait_for()
    dismiss_news(page)


def dismiss_news(page: Any) -> None:
    """The "get Jupyter news?" toast (the settings already turn the feed off)."""
    no = page.locator(".jp-Notification-Toast").get_by_role("button", name="No")
    if no.count():
        no.first.click()


def cells(page: Any) -> Any:
    return page.locator(".jp-Notebook .jp-Cell")


def code_cell(page: Any, text: str) -> Any:
    """The code cell whose source contains ``text``."""
    found = page.locator(".jp-Notebook .jp-CodeCell").filter(
        has=page.locator(".jp-InputArea-editor", has_text=text)
    )
    assert found.count() == 1, f"{found.count()} code cells contain {text!r}"
    return found.first


def run_cell(page: Any, cell: Any) -> None:
    """Click into the cell, Shift+Enter, and wait for its prompt to show a number."""
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    prompt = cell.locator(".jp-InputPrompt")
    page.wait_for_function(
        "p => /\\[\\d+\\]/.test(p.textContent)", arg=prompt.element_handle(), timeout=WAIT
    )


def shoot(element: Any, path: Path) -> None:
    """A picture of ``element`` whole: the notebook scrolls inside its own panel,
    which can leave the element's top outside it (clipped in the picture)."""
    element.evaluate("e => e.scrollIntoView({block: 'center'})")
    element.screenshot(path=str(path))


def executed_prompts(page: Any) -> list[str]:
    texts = page.locator(".jp-CodeCell .jp-InputPrompt").all_text_contents()
    return [t.strip() for t in texts if re.search(r"\d", t)]


def test_approve_with_the_mouse_completes_the_run_without_another_cell(
    page: Any, screenshots: Path
):
    run_cell(page, code_cell(page, "%config Wfnb.db"))
    run_cell(page, code_cell(page, "def fetch_items"))
    workflow = code_cell(page, "%%workflow shop")
    run_cell(page, workflow)
    output = workflow.locator(".jp-OutputArea")
    output.locator("svg").first.wait_for()
    approve = output.get_by_role("button", name="Approve")
    approve.wait_for()
    output.get_by_text("paused").first.wait_for()
    shoot(output, screenshots / "approval-waiting.png")

    approve.click()  # a real mouse click on the widget

    output.get_by_text("completed").first.wait_for()
    output.get_by_text("4/4").first.wait_for()
    assert approve.count() == 0, "the Approve button is still there after the run ended"
    # Nothing but the three cells above ran: the click alone finished the run.
    assert executed_prompts(page) == ["[1]:", "[2]:", "[3]:"]
    output.locator("svg").first.wait_for()
    shoot(output, screenshots / "run-completed.png")


def test_a_failed_run_ends_as_a_picture_naming_the_commands_to_carry_on(page: Any):
    """The cells appended to the copy: ``parse_amounts`` raises inside the step.
    The ended run's output is static: the commands, filled in, no button, and the
    traceback of the user's function."""
    run_cell(page, code_cell(page, "def parse_amounts"))
    workflow = code_cell(page, "%%workflow amounts")
    run_cell(page, workflow)
    output = workflow.locator(".jp-OutputArea")
    output.get_by_text("invalid literal for int()").first.wait_for()
    output.get_by_text(re.compile(r"%workflow rerun [0-9a-f]{12} --from parse")).first.wait_for()
    output.get_by_text(re.compile(r"%workflow resume [0-9a-f]{12}")).first.wait_for()
    assert output.get_by_role("button").count() == 0, "a button survived the run's end"
    assert output.locator(f'.jp-OutputArea-output[data-mime-type="{WIDGET}"]').count() == 0
    # The stored traceback, collapsed under the error: the user's frame, not only
    # the exception's message.
    output.locator("details summary", has_text="traceback").first.click()
    output.get_by_text(re.compile(r"\bin parse_amounts\b")).first.wait_for()


def test_reopened_notebook_shows_the_final_dag_and_no_widget_errors(
    page: Any, lab: Lab, screenshots: Path
):
    page.keyboard.press("Control+s")
    page.locator(".jp-mod-dirty").first.wait_for(state="detached")
    page.goto("about:blank")
    lab.shut_down_kernels()
    saved = nbformat.read(lab.root / NOTEBOOK, as_version=4)
    [shop] = [c for c in saved.cells if c.source.startswith("%%workflow shop")]
    kinds = [sorted(o.get("data", {})) for o in shop.outputs]
    assert not any(WIDGET in k for k in kinds), f"the final view was saved as a widget: {kinds}"

    open_notebook(page, lab)
    output = code_cell(page, "%%workflow shop").locator(".jp-OutputArea")
    output.locator("svg").first.wait_for()
    output.get_by_text("completed").first.wait_for()
    # Every output of the reopened notebook is drawn once the DAG is; none is a widget
    # (which could only show "Error displaying widget: model not found").
    rendered = page.locator(".jp-OutputArea-output[data-mime-type]")
    mime_types = {rendered.nth(i).get_attribute("data-mime-type") for i in range(rendered.count())}
    assert WIDGET not in mime_types, mime_types
    assert "Error displaying widget" not in page.content()
    shoot(output, screenshots / "reopened-final-dag.png")
    shoot(output.locator(".wfnb-timeline").first, screenshots / "timeline.png")


def test_the_final_picture_reads_in_the_dark_theme(page: Any, lab: Lab, screenshots: Path):
    """The reopened notebook again, in JupyterLab Dark: outlines and text stay
    visible (the pictures carry their own light panel)."""
    lab.theme("JupyterLab Dark")
    try:
        open_notebook(page, lab)
        page.locator('body[data-jp-theme-light="false"]').wait_for(state="attached")
        output = code_cell(page, "%%workflow shop").locator(".jp-OutputArea")
        output.locator("svg").first.wait_for()
        output.get_by_text("completed").first.wait_for()
        assert "Error displaying widget" not in page.content()
        shoot(output, screenshots / "reopened-final-dag-dark.png")
        shoot(output.locator(".wfnb-timeline").first, screenshots / "timeline-dark.png")
    finally:
        lab.theme("JupyterLab Light")
