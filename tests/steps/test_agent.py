"""`agent` steps against a small OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

import wfnb

from ..conftest import arun, wf
from .conftest import Handler, LocalServer, Reply, Seen

PATH = "/v1/chat/completions"


class FakeModel:
    """Answers chat completions with scripted contents, in turn (the last repeats),
    counting tokens as the words of the prompt and of the answer."""

    def __init__(self, server: LocalServer) -> None:
        self.server = server
        self.contents: list[str] = ["hello"]
        server.routes[PATH] = self.answer

    @property
    def base_url(self) -> str:
        return self.server.url("/v1")

    def answer(self, handler: Handler, seen: Seen) -> None:
        request = seen.json
        count = len(self.server.seen(PATH))
        content = self.contents[min(count, len(self.contents)) - 1]
        prompt_tokens = sum(len(str(m["content"]).split()) for m in request["messages"])
        completion_tokens = len(content.split())
        handler.send(
            Reply(
                200,
                {
                    "id": f"chatcmpl-{count}",
                    "object": "chat.completion",
                    "model": request["model"] + "-served",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": completion_tokens,
                        "total_tokens": prompt_tokens + completion_tokens,
                    },
                },
            )
        )

    def requests(self) -> list[dict[str, Any]]:
        return [seen.json for seen in self.server.seen(PATH)]


@pytest.fixture
def llm(server: LocalServer) -> FakeModel:
    return FakeModel(server)


@pytest.fixture(autouse=True)
def no_agent_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("OPENAI_BASE_URL", "WFNB_AGENT_MODEL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    yield


class City(BaseModel):
    name: str
    population: int


CITY_SCHEMA = {
    "title": "city",
    "type": "object",
    "properties": {"name": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["name", "population"],
}


def run(text: str, engine: wfnb.Engine | None = None, **inputs: Any) -> Any:
    engine = engine or wfnb.Engine()

    async def main() -> Any:
        try:
            handle = await engine.start(wf(text), inputs=inputs)
            result = await handle
            return result, await engine.store.get_calls(run_id=handle.id)
        finally:
            await engine.close()

    return arun(main())


def test_plain_text_with_system_prompt_and_settings(llm: FakeModel) -> None:
    llm.contents = ["Paris is the capital"]
    text = f"""
inputs: {{country: France}}
steps:
  ask:
    agent:
      base_url: {llm.base_url}
      model: tiny-1
      system: "You answer in one line about {{{{ inputs.country }}}}."
      prompt: "What is the capital of {{{{ inputs.country }}}}?"
      temperature: 0.2
      max_tokens: 50
"""
    result, _ = run(text)
    assert result.ok, result.error
    out = result["ask"]
    assert out["text"] == "Paris is the capital" and out["json"] is None
    assert out["model"] == "tiny-1-served"
    assert out["usage"] == {"prompt_tokens": 13, "completion_tokens": 4, "total_tokens": 17}
    (request,) = llm.requests()
    assert request["model"] == "tiny-1"
    assert request["messages"] == [
        {"role": "system", "content": "You answer in one line about France."},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    assert request["temperature"] == 0.2 and request["max_tokens"] == 50
    assert "response_format" not in request
    seen = llm.server.seen(PATH)[0]
    assert "authorization" not in seen.headers and seen.headers["idempotency-key"]


def test_structured_output_by_json_schema(llm: FakeModel) -> None:
    llm.contents = ['{"name": "Paris", "population": 2100000}']
    text = f"""
steps:
  ask:
    agent: {{base_url: {llm.base_url}, model: tiny-1, prompt: "Biggest city?", output_schema: {CITY_SCHEMA}}}
"""
    result, _ = run(text.replace("'", '"'))
    assert result.ok, result.error
    assert result["ask"]["json"] == {"name": "Paris", "population": 2100000}
    (request,) = llm.requests()
    assert request["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "city", "schema": CITY_SCHEMA},
    }


def test_structured_output_by_pydantic_model(llm: FakeModel) -> None:
    llm.contents = ['```json\n{"name": "Lyon", "population": 520000}\n```']
    text = f'steps:\n  ask: {{agent: {{base_url: {llm.base_url}, model: tiny-1, prompt: "A city?", output_schema: City}}}}'
    result, _ = run(text, wfnb.Engine(namespace={"City": City}))
    assert result.ok, result.error
    assert result["ask"]["json"] == {"name": "Lyon", "population": 520000}
    schema = llm.requests()[0]["response_format"]["json_schema"]
    assert schema["name"] == "City" and schema["schema"] == City.model_json_schema()


def test_invalid_json_gets_one_repair_request(llm: FakeModel) -> None:
    llm.contents = ['{"name": "Paris", population: lots', '{"name": "Paris", "population": 2}']
    text = f'steps:\n  ask: {{agent: {{base_url: {llm.base_url}, model: tiny-1, prompt: "A city?", output_schema: City}}}}'
    result, calls = run(text, wfnb.Engine(namespace={"City": City}))
    assert result.ok, result.error
    assert result["ask"]["json"] == {"name": "Paris", "population": 2}
    first, repair = llm.requests()
    assert repair["messages"][:1] == first["messages"]
    assert repair["messages"][1] == {"role": "assistant", "content": llm.contents[0]}
    assert "not JSON" in repair["messages"][2]["content"]
    assert [c.seq for c in calls] == [1, 2]
    usage = result["ask"]["usage"]
    assert usage["total_tokens"] == sum(c.data["total_tokens"] for c in calls)


def test_a_reply_still_wrong_after_the_repair_fails(llm: FakeModel) -> None:
    llm.contents = ['{"name": "Paris"}']
    text = f'steps:\n  ask: {{agent: {{base_url: {llm.base_url}, model: tiny-1, prompt: "A city?", output_schema: City}}}}'
    result, _ = run(text, wfnb.Engine(namespace={"City": City}))
    assert not result.ok
    assert "after one repair" in result.error and "population" in result.error
    assert len(llm.requests()) == 2


def test_schema_mismatch_is_repaired_too(llm: FakeModel) -> None:
    llm.contents = ['{"name": "Paris", "population": "many"}', '{"name": "P", "population": 1}']
    text = f"""
steps:
  ask:
    agent: {{base_url: {llm.base_url}, model: tiny-1, prompt: "x", output_schema: {CITY_SCHEMA}}}
""".replace("'", '"')
    result, _ = run(text)
    assert result.ok and result["ask"]["json"] == {"name": "P", "population": 1}
    assert "population" in llm.requests()[1]["messages"][2]["content"]


def test_token_usage_view_sums_per_attempt(llm: FakeModel, tmp_path: Any) -> None:
    llm.contents = ["not json at all", '{"name": "P", "population": 1}']
    text = f"""
agent: {{base_url: {llm.base_url}, model: tiny-1}}
steps:
  a: {{agent: {{prompt: "one two three", output_schema: City}}}}
  b: {{agent: {{prompt: "four five", model: tiny-2}}, needs: [a]}}
"""
    store = wfnb.DuckDBStore(tmp_path / "runs.duckdb")
    result, calls = run(text, wfnb.Engine(store=store, namespace={"City": City}))
    assert result.ok, result.error
    reader = wfnb.DuckDBStore(tmp_path / "runs.duckdb")
    try:
        usage = reader.sql(
            "SELECT run_id, step_id, attempt, model, prompt_tokens, completion_tokens, "
            "total_tokens FROM token_usage ORDER BY step_id"
        )
        requests = reader.sql("SELECT step_id, kind, status FROM http_requests ORDER BY seq")
    finally:
        arun(reader.close())
    rows = usage[["step_id", "attempt", "model", "total_tokens"]].values.tolist()
    a_total = result["a"]["usage"]["total_tokens"]
    b_total = result["b"]["usage"]["total_tokens"]
    assert rows == [["a", 1, "tiny-1-served", a_total], ["b", 1, "tiny-2-served", b_total]]
    assert a_total == sum(c.data["total_tokens"] for c in calls if c.step_id == "a")
    assert len([c for c in calls if c.step_id == "a"]) == 2  # the repair counts too
    assert (usage["prompt_tokens"] + usage["completion_tokens"] == usage["total_tokens"]).all()
    assert str(usage["total_tokens"].dtype) == "int64"
    assert set(requests["kind"]) == {"agent"} and len(requests) == 3


def test_missing_endpoint_is_a_clear_error_at_start() -> None:
    engine = wfnb.Engine(namespace={"f": lambda: 1})
    text = 'steps:\n  first: {code: f}\n  ask: {agent: {prompt: "hi", model: m}, needs: [first]}'

    async def main() -> None:
        with pytest.raises(wfnb.DefinitionError) as info:
            await engine.start(wf(text))
        message = str(info.value)
        assert info.value.step_id == "ask" and info.value.line == 3
        assert "base_url" in message and "OPENAI_BASE_URL" in message
        assert "Wfnb.agent_base_url" in message
        assert await engine.store.list_runs() == []  # nothing stored

    arun(main())


def test_missing_model_is_a_clear_error_at_start(llm: FakeModel) -> None:
    engine = wfnb.Engine()
    text = f'steps:\n  ask: {{agent: {{prompt: "hi", base_url: {llm.base_url}}}}}'

    async def main() -> None:
        with pytest.raises(wfnb.DefinitionError, match="no model.*WFNB_AGENT_MODEL"):
            await engine.start(wf(text))
        assert await engine.store.list_runs() == []

    arun(main())


def test_endpoint_from_the_engine_then_the_environment(
    llm: FakeModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = 'steps:\n  ask: {agent: {prompt: "hi"}}'
    result, _ = run(text, wfnb.Engine(agent_base_url=llm.base_url, agent_model="from-engine"))
    assert result.ok and llm.requests()[-1]["model"] == "from-engine"

    monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)
    monkeypatch.setenv("WFNB_AGENT_MODEL", "from-env")
    monkeypatch.setenv("OPENAI_API_KEY", "env-key-123")
    result, _ = run(text)
    assert result.ok and llm.requests()[-1]["model"] == "from-env"
    assert llm.server.seen(PATH)[-1].headers["authorization"] == "Bearer env-key-123"

    # the workflow's own agent: wins over the engine's and the environment
    text = f"agent: {{model: from-workflow}}\n{text}"
    result, _ = run(text, wfnb.Engine(agent_model="from-engine"))
    assert result.ok and llm.requests()[-1]["model"] == "from-workflow"


def test_an_output_schema_name_that_is_not_a_model_fails_clearly(llm: FakeModel) -> None:
    text = f'steps:\n  ask: {{agent: {{base_url: {llm.base_url}, model: m, prompt: "x", output_schema: helper}}}}'
    result, _ = run(text, wfnb.Engine(namespace={"helper": len}))
    assert not result.ok and "not a pydantic model" in result.error
    assert llm.requests() == []


def test_server_error_status_fails_with_the_status(llm: FakeModel) -> None:
    llm.server.routes[PATH] = [Reply(401, {"error": {"message": "bad key"}})]
    text = f'steps:\n  ask: {{agent: {{base_url: {llm.base_url}, model: m, prompt: "x"}}, retry: {{max_attempts: 3, delay: 0}}}}'
    result, calls = run(text)
    assert not result.ok and "401" in result.error and "bad key" in result.error
    assert len(calls) == 1  # a 401 is not retried
