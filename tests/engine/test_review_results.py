"""Review: what RunResult shows."""

import asyncio

import wfnb
from wfnb.model import RunStatus

from ..conftest import arun, wf

TOKEN = "sk-live-0123456789"


def test_a_live_result_masks_secrets_as_the_stored_one_does():
    def login(token):
        return {"header": f"Bearer {token}"}

    def use(header):
        raise ValueError(f"server refused {header}")

    engine = wfnb.Engine(namespace={"login": login, "use": use}, secrets={"api": TOKEN})
    workflow = wf(
        """
steps:
  login: {code: login, with: {token: "{{ secrets.api }}"}}
  use: {code: use, needs: [login], with: {header: "{{ steps.login.output.header }}"}}
"""
    )

    async def main():
        handle = await engine.start(workflow)
        live = await asyncio.wait_for(handle.wait(), 10)
        # as after a restart: the result comes from the store
        restarted = wfnb.Engine(engine.store, secrets={"api": TOKEN})
        return live, await restarted.result(handle.id)

    live, stored = arun(main())
    assert live.status is RunStatus.FAILED and live.failed_step == "use"
    assert TOKEN not in repr(stored)
    assert TOKEN not in repr(live)  # shown to the user: masked too
    assert live.outputs == stored.outputs and live.error == stored.error


def test_a_child_runs_outputs_reach_the_parents_steps_unmasked():
    seen = []

    def login(token):
        return f"Bearer {token}"

    def use(header):
        seen.append(header)
        return "ok"

    engine = wfnb.Engine(namespace={"login": login, "use": use}, secrets={"api": TOKEN})
    engine.register(
        wf("steps:\n  login: {code: login, with: {token: '{{ secrets.api }}'}}\n", "auth")
    )
    parent = wf(
        "steps:\n  auth: {workflow: auth}\n"
        "  use: {code: use, needs: [auth], with: {header: '{{ steps.auth.output.login }}'}}\n",
        name="parent",
    )

    async def main():
        return await asyncio.wait_for((await engine.start(parent)).wait(), 10)

    result = arun(main())
    assert result.status is RunStatus.COMPLETED, result.error
    assert seen == [f"Bearer {TOKEN}"]  # the step gets the real value...
    assert TOKEN not in repr(result)  # ...the user sees it masked
