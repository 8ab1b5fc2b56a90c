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
        engine._finished.clear()  # as after a restart: the result comes from the store
        return live, await engine.result(handle.id)

    live, stored = arun(main())
    assert live.status is RunStatus.FAILED and live.failed_step == "use"
    assert TOKEN not in repr(stored)
    assert TOKEN not in repr(live)  # shown to the user: masked too
    assert live.outputs == stored.outputs and live.error == stored.error
