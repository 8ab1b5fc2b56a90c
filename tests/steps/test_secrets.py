"""No secret reaches the disk: after runs whose http and agent steps sent secrets
(named ones, and credentials in headers), the raw bytes of the DuckDB file and of
every file beside it, and every value of every table, hold none of them; events
neither. The server did receive every one of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import wfnb
from wfnb.events import Event

from ..conftest import arun, wf
from .conftest import Handler, LocalServer, Reply, Seen

SECRETS = {"api": "SECRET-api-4242", "openai": "SECRET-openai-7373", "tok": "SECRET-tok-1111"}
#: credentials that are not named secrets: known only by the header they travel in
CREDENTIALS = {
    "MY_KEY": "literal-key-5555",
    "MY_COOKIE": "sid=literal-cookie-6666",
}
SERVER_SET = ["server-cookie-8888", "server-token-9999"]
EVERY_VALUE = [*SECRETS.values(), *CREDENTIALS.values(), "literal-cookie-6666", *SERVER_SET]


def echo(handler: Handler, seen: Seen) -> None:
    handler.send(
        Reply(
            200,
            {"headers": seen.headers, "query": seen.query},
            {"Set-Cookie": "session=server-cookie-8888", "X-Auth-Token": "server-token-9999"},
        )
    )


def refuse(handler: Handler, seen: Seen) -> None:
    handler.send(Reply(500, f"cannot accept {seen.headers.get('authorization')}"))


def chat(handler: Handler, seen: Seen) -> None:
    said = f"you sent {seen.headers.get('authorization')}"
    handler.send(
        Reply(
            200,
            {
                "model": "m",
                "choices": [{"message": {"role": "assistant", "content": said}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            },
        )
    )


def workflow(server: LocalServer) -> str:
    return f"""
env: [MY_KEY, MY_COOKIE]
fail_fast: false
steps:
  echo:
    http:
      url: "{server.url("/echo")}"
      headers:
        Authorization: "Bearer {{{{ secrets.api }}}}"
        X-Api-Key: "{{{{ env.MY_KEY }}}}"
        Cookie: "{{{{ env.MY_COOKIE }}}}"
      params: {{token: "{{{{ secrets.tok }}}}", page: 1}}
  keep:
    needs: [echo]
    code: keep
    with: {{seen: "{{{{ steps.echo.output }}}}", key: "{{{{ secrets.api }}}}"}}
  refused:
    http:
      url: "{server.url("/refuse")}?api_key={{{{ env.MY_KEY }}}}"
      headers: {{Authorization: "Bearer {{{{ secrets.api }}}}"}}
    retry: {{max_attempts: 2, delay: 0}}
  ask:
    agent:
      base_url: "{server.url("/v1")}"
      model: m
      api_key: "{{{{ secrets.openai }}}}"
      prompt: "hello"
"""


def files_beside(db: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in db.parent.iterdir() if path.is_file()}


def every_value(db: Path) -> str:
    """Every table of the file, every column, as text: DuckDB may compress strings on
    disk, so the raw bytes alone could miss one."""
    store = wfnb.DuckDBStore(db)
    try:
        tables = store.sql("SELECT table_name FROM duckdb_tables()")["table_name"]
        return "\n".join(store.sql(f'SELECT * FROM "{t}"').to_csv() for t in tables)
    finally:
        arun(store.close())


def test_no_secret_is_stored_anywhere(
    server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    server.routes["/echo"] = echo
    server.routes["/refuse"] = refuse
    server.routes["/v1/chat/completions"] = chat
    db = tmp_path / "store" / "runs.duckdb"
    engine = wfnb.Engine(
        store=wfnb.DuckDBStore(db),
        namespace={"keep": lambda seen, key: {"seen": seen, "key": key}},
        secrets=SECRETS,
    )
    events: list[Event] = []
    engine.subscribe(events.append)
    while_running: dict[str, bytes] = {}

    async def main() -> Any:
        handle = await engine.start(wf(workflow(server)), inputs={"given": SECRETS["tok"]})
        result = await handle
        while_running.update(files_beside(db))  # the journal, before it is folded away
        rows = await engine.store.get_calls(run_id=handle.id)
        await engine.close()
        return result, rows

    result, calls = arun(main())

    # the steps did their work with the real values
    assert result.outputs.keys() == {"echo", "keep", "ask"}, result.error
    echoed = server.seen("/echo")[0]
    assert echoed.headers["authorization"] == f"Bearer {SECRETS['api']}"
    assert echoed.headers["x-api-key"] == CREDENTIALS["MY_KEY"]
    assert echoed.headers["cookie"] == CREDENTIALS["MY_COOKIE"]
    assert echoed.query["token"] == [SECRETS["tok"]]
    assert server.seen("/v1/chat/completions")[0].headers["authorization"] == (
        f"Bearer {SECRETS['openai']}"
    )
    assert len(server.seen("/refuse")) == 2 and "500" in result.error

    # ... and none of it is on disk, in a table, an event, a result or a call row
    assert any(name.endswith(".journal") for name in while_running)
    after = files_beside(db)
    table_text = every_value(db)
    assert "refuse" in table_text and "http_requests" not in table_text  # the scan sees rows
    shown = [repr(e) for e in events] + [repr(result), repr(calls)]
    for value in EVERY_VALUE:
        for name, data in [*while_running.items(), *after.items()]:
            assert value.encode() not in data, f"{value} in {name}"
        assert value not in table_text, value
        assert not any(value in text for text in shown), value

    # masked where they were, so a reader sees that something was there
    echo_out = result["echo"]
    assert echo_out["headers"]["set-cookie"] == "***"
    assert echo_out["headers"]["x-auth-token"] == "***"
    assert echo_out["json"]["headers"]["authorization"] == "***"
    assert echo_out["json"]["headers"]["x-api-key"] == "***"
    assert result["ask"]["text"] == "you sent ***"
    refused_urls = [c.data["url"] for c in calls if c.step_id == "refused"]
    assert refused_urls == [server.url("/refuse") + "?api_key=***"] * 2
    echo_url = next(c.data["url"] for c in calls if c.step_id == "echo")
    assert echo_url == server.url("/echo") + "?token=***&page=1"
