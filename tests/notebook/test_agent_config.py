"""``%config Wfnb.agent_base_url`` / ``agent_model`` reach the engine's agent steps,
also when set after the engine was made."""

from __future__ import annotations

import pytest

from wfnb.model import RunStatus

from ..conftest import arun
from ..steps.conftest import LocalServer, Reply
from .conftest import Shell

COMPLETION = {
    "model": "served",
    "choices": [{"message": {"role": "assistant", "content": "hi"}}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


def test_config_sets_the_agent_endpoint(shell: Shell, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_BASE_URL", "WFNB_AGENT_MODEL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    server = LocalServer()
    server.routes["/v1/chat/completions"] = [Reply(200, COMPLETION)]

    async def go() -> None:
        assert (await shell.run("%load_ext wfnb")).error is None
        cell = "%%workflow ask\nsteps:\n  a: {agent: {prompt: hello}}\n"
        refused = await shell.run(cell)
        assert "step 'a', line 3" in refused.stderr and "agent_base_url" in refused.stderr
        await shell.run(f'%config Wfnb.agent_base_url = "{server.url("/v1")}"')
        await shell.run('%config Wfnb.agent_model = "tiny"')
        done = await shell.run(cell)
        assert done.error is None, done.stderr
        result = (await shell.run("await _wf_run")).result
        assert result.status is RunStatus.COMPLETED and result.outputs["a"]["text"] == "hi"

    try:
        arun(go())
    finally:
        server.close()
    assert server.seen("/v1/chat/completions")[0].json["model"] == "tiny"
