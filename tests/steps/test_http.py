"""`http` steps against a real server on 127.0.0.1 (tests/steps/conftest.py)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

import wfnb
from wfnb.model import StepStatus
from wfnb.steps.http import IN_FLIGHT
from wfnb.store.base import CallRecord, StepRecord

from ..conftest import arun, wf
from .conftest import Handler, LocalServer, Reply, Seen


def run(
    text: str, engine: wfnb.Engine | None = None, **inputs: Any
) -> tuple[wfnb.RunResult, list[StepRecord], list[CallRecord]]:
    engine = engine or wfnb.Engine()

    async def main() -> tuple[wfnb.RunResult, list[StepRecord], list[CallRecord]]:
        try:
            handle = await engine.start(wf(text), inputs=inputs)
            result = await handle
            steps = await engine.store.get_steps(run_id=handle.id)
            return result, steps, await engine.store.get_calls(run_id=handle.id)
        finally:
            await engine.close()

    return arun(main())


def test_json_response_is_the_output(server: LocalServer) -> None:
    server.routes["/items"] = [
        Reply(200, {"items": [1, 2]}, {"X-Total": "2", "Content-Type": "application/json"})
    ]
    result, _, _ = run(f'steps:\n  get: {{http: {{url: "{server.url("/items")}"}}}}')
    assert result.ok, result.error
    out = result["get"]
    assert out["status"] == 200 and out["json"] == {"items": [1, 2]}
    assert out["body"] == '{"items": [1, 2]}'
    assert out["headers"]["x-total"] == "2" and all(k == k.lower() for k in out["headers"])
    assert server.seen("/items")[0].method == "GET"


def test_a_body_that_is_not_json_has_json_null(server: LocalServer) -> None:
    server.routes["/t"] = [Reply(200, "plain", {"Content-Type": "text/plain"})]
    result, _, _ = run(f'steps:\n  get: {{http: {{url: "{server.url("/t")}"}}}}')
    assert result["get"]["body"] == "plain" and result["get"]["json"] is None


def test_templates_in_url_headers_params_and_json(server: LocalServer) -> None:
    server.routes["/orders/7"] = [Reply(201, {"ok": True})]
    text = f"""
inputs: {{id: 7, who: ann}}
steps:
  first: {{code: pick}}
  post:
    needs: [first]
    http:
      url: "{server.url("/orders")}/{{{{ inputs.id }}}}"
      method: post
      headers: {{X-User: "{{{{ inputs.who }}}}", X-From: "{{{{ steps.first.output }}}}"}}
      params: {{page: "{{{{ inputs.id * 2 }}}}"}}
      json: {{who: "{{{{ inputs.who }}}}", items: ["{{{{ steps.first.output }}}}", 3]}}
"""
    engine = wfnb.Engine(namespace={"pick": lambda: "apple"})
    result, _, _ = run(text, engine)
    assert result.ok, result.error
    (seen,) = server.seen("/orders/7")
    assert seen.method == "POST"
    assert seen.headers["x-user"] == "ann" and seen.headers["x-from"] == "apple"
    assert seen.query == {"page": ["14"]}
    assert seen.json == {"who": "ann", "items": ["apple", 3]}
    assert result["post"]["status"] == 201


def test_a_raw_body_is_sent_as_is(server: LocalServer) -> None:
    server.routes["/raw"] = [Reply(200, "ok")]
    text = f'steps:\n  put: {{http: {{url: "{server.url("/raw")}", method: PUT, body: "a={{{{ 1 + 1 }}}}"}}}}'
    result, _, _ = run(text)
    assert result.ok and server.seen("/raw")[0].body == b"a=2"


def test_404_fails_with_status_and_excerpt_and_is_not_retried(server: LocalServer) -> None:
    server.routes["/missing"] = [Reply(404, "no such item: 42 " + "x" * 5000)]
    text = f'steps:\n  get: {{http: {{url: "{server.url("/missing")}"}}, retry: {{max_attempts: 3, delay: 0}}}}'
    result, steps, _ = run(text)
    assert result.status is wfnb.RunStatus.FAILED
    assert "404" in result.error and "no such item: 42" in result.error
    assert len(result.error) < 500  # an excerpt, not the whole body
    assert len(server.seen("/missing")) == 1
    assert [s.attempt for s in steps] == [1]


def test_accept_status_makes_an_error_status_an_output(server: LocalServer) -> None:
    server.routes["/missing"] = [Reply(404, {"error": "gone"})]
    text = f'steps:\n  get: {{http: {{url: "{server.url("/missing")}", accept_status: [404]}}}}'
    result, _, _ = run(text)
    assert (
        result.ok and result["get"]["status"] == 404 and result["get"]["json"] == {"error": "gone"}
    )


def test_503_then_200_with_retry(server: LocalServer) -> None:
    server.routes["/flaky"] = [Reply(503, "busy"), Reply(200, "fine")]
    text = f'steps:\n  get: {{http: {{url: "{server.url("/flaky")}"}}, retry: {{max_attempts: 3, delay: 0}}}}'
    result, steps, calls = run(text)
    assert result.ok and result["get"]["body"] == "fine"
    assert [(s.attempt, s.status) for s in steps] == [
        (1, StepStatus.FAILED),
        (2, StepStatus.COMPLETED),
    ]
    assert "503" in (steps[0].error or "")
    assert [(c.attempt, c.data["status"]) for c in calls] == [(1, 503), (2, 200)]


def test_without_retry_a_503_fails_at_once(server: LocalServer) -> None:
    server.routes["/flaky"] = [Reply(503, "busy"), Reply(200, "fine")]
    result, _, _ = run(f'steps:\n  get: {{http: {{url: "{server.url("/flaky")}"}}}}')
    assert not result.ok and "503" in result.error and len(server.seen("/flaky")) == 1


def test_429_waits_for_retry_after(server: LocalServer) -> None:
    arrived: list[float] = []

    def limited(handler: Handler, seen: Seen) -> None:
        arrived.append(time.monotonic())
        if len(arrived) == 1:
            handler.send(Reply(429, "slow down", {"Retry-After": "1"}))
        else:
            handler.send(Reply(200, "ok"))

    server.routes["/limited"] = limited
    text = f'steps:\n  get: {{http: {{url: "{server.url("/limited")}"}}, retry: {{max_attempts: 2, delay: 0}}}}'
    engine = wfnb.Engine()
    delays: list[float] = []
    engine.subscribe(
        lambda event: delays.append(event.data["delay"]) if event.data.get("delay") else None
    )
    result, _, _ = run(text, engine)
    assert result.ok
    assert delays == [1.0]  # the server's wait, not the step's delay of 0
    assert arrived[1] - arrived[0] >= 0.95  # a lower bound only: never flaky


def test_connection_refused_is_retried_then_fails(server: LocalServer) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    text = f'steps:\n  get: {{http: {{url: "http://127.0.0.1:{port}/x"}}, retry: {{max_attempts: 2, delay: 0}}}}'
    result, steps, calls = run(text)
    assert not result.ok and "cannot connect" in result.error
    assert [s.attempt for s in steps] == [1, 2]
    assert all("status" not in c.data for c in calls)
    assert all("cannot connect" in c.data["error"] for c in calls)


def test_slow_server_hits_the_step_timeout(server: LocalServer) -> None:
    def stall(handler: Handler, seen: Seen) -> None:
        server.closing.wait(60)  # answers only at teardown

    server.routes["/slow"] = stall
    text = f'steps:\n  get: {{http: {{url: "{server.url("/slow")}"}}, timeout: 0.5}}'
    result, steps, calls = run(text)
    assert not result.ok and "timed out after 0.5 s" in result.error
    assert steps[-1].status is StepStatus.FAILED
    (call,) = calls
    assert "status" not in call.data
    assert "cut off" in call.data["error"]


def test_oversized_streamed_body_stops_early(server: LocalServer) -> None:
    planned = 200 * 1024 * 1024
    sent = {"bytes": 0}
    done = threading.Event()

    def firehose(handler: Handler, seen: Seen) -> None:
        handler.send_response(200)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        chunk = b"x" * 65536
        frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        try:
            while sent["bytes"] < planned:
                handler.wfile.write(frame)
                sent["bytes"] += len(chunk)
            handler.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the client hung up: what the test wants
        finally:
            done.set()

    server.routes["/big"] = firehose
    text = f'steps:\n  get: {{http: {{url: "{server.url("/big")}", max_bytes: 100000}}}}'
    result, _, calls = run(text)
    assert not result.ok and "max_bytes" in result.error
    assert done.wait(60)
    assert sent["bytes"] < planned // 4, sent  # the client stopped reading long before the end
    assert 100000 < calls[0].data["bytes"] < 100000 + 2 * 65536 + 1


def test_declared_length_over_the_cap_fails_before_reading(server: LocalServer) -> None:
    server.routes["/big"] = [Reply(200, b"y" * 5000)]
    text = f'steps:\n  get: {{http: {{url: "{server.url("/big")}", max_bytes: 1000}}, retry: {{max_attempts: 3, delay: 0}}}}'
    result, _, calls = run(text)
    assert not result.ok and "max_bytes" in result.error and "declares 5,000" in result.error
    assert len(server.seen("/big")) == 1  # too large is too large again: no retry
    assert calls[0].data["bytes"] == 0


def test_idempotency_key_is_the_same_on_every_attempt(server: LocalServer) -> None:
    server.routes["/pay"] = [Reply(500, "oops"), Reply(502, "oops"), Reply(200, "paid")]
    text = f"""
steps:
  pay: {{http: {{url: "{server.url("/pay")}", method: POST}}, retry: {{max_attempts: 3, delay: 0}}}}
  other: {{http: {{url: "{server.url("/pay")}", method: POST}}, needs: [pay]}}
"""
    result, _, _ = run(text)
    assert result.ok, result.error
    keys = [r.headers["idempotency-key"] for r in server.seen("/pay")]
    assert len(keys) == 4 and len(set(keys[:3])) == 1
    assert keys[3] != keys[0]  # another step, another key


def test_a_users_own_idempotency_key_wins(server: LocalServer) -> None:
    server.routes["/pay"] = [Reply(200, "ok")]
    text = f'steps:\n  pay: {{http: {{url: "{server.url("/pay")}", headers: {{idempotency-key: mine}}}}}}'
    result, _, _ = run(text)
    assert result.ok and server.seen("/pay")[0].headers["idempotency-key"] == "mine"


def test_http_requests_rows_for_every_request_of_every_attempt(
    server: LocalServer, tmp_path: Any
) -> None:
    server.routes["/flaky"] = [Reply(503, "busy"), Reply(200, "fine" * 10)]
    server.routes["/once"] = [Reply(204)]
    text = f"""
steps:
  flaky: {{http: {{url: "{server.url("/flaky")}?q=1"}}, retry: {{max_attempts: 2, delay: 0}}}}
  once: {{http: {{url: "{server.url("/once")}", method: DELETE}}, needs: [flaky]}}
"""
    store = wfnb.DuckDBStore(tmp_path / "runs.duckdb")
    result, _, _ = run(text, wfnb.Engine(store=store))
    assert result.ok
    reader = wfnb.DuckDBStore(tmp_path / "runs.duckdb")
    try:
        rows = reader.sql(
            "SELECT run_id, step_id, attempt, method, url, status, duration_ms, bytes, error "
            "FROM http_requests ORDER BY started_at"
        )
    finally:
        arun(reader.close())
    assert rows[["step_id", "attempt", "method", "status", "bytes"]].values.tolist() == [
        ["flaky", 1, "GET", 503, 4],
        ["flaky", 2, "GET", 200, 40],
        ["once", 1, "DELETE", 204, 0],
    ]
    assert set(rows["run_id"]) == {result.run_id}
    assert rows["url"][0] == server.url("/flaky") + "?q=1"
    assert "503" in rows["error"][0] and rows["error"][1:].isna().all()
    assert (rows["duration_ms"] >= 0).all()


def test_a_request_has_its_row_before_it_is_sent_and_the_end_over_it(
    server: LocalServer,
) -> None:
    """While a request is in flight its row is already in the store, saying so (a
    process killed now leaves it: tests/steps/test_http_crash.py); once it ends,
    the same row says how."""
    answer = threading.Event()

    def slow(handler: Handler, seen: Seen) -> None:
        answer.wait(60)
        handler.send(Reply(200, {"ok": True}))

    server.routes["/slow"] = slow
    engine = wfnb.Engine()
    text = f'steps:\n  call: {{http: {{url: "{server.url("/slow")}", method: POST}}}}'

    async def main() -> tuple[list[CallRecord], list[CallRecord]]:
        try:
            handle = await engine.start(wf(text))
            await asyncio.to_thread(server.wait_for, "/slow", 1)
            in_flight = await engine.store.get_calls(run_id=handle.id)
            answer.set()
            assert (await handle).ok
            return in_flight, await engine.store.get_calls(run_id=handle.id)
        finally:
            answer.set()
            await engine.close()

    in_flight, ended = arun(main())
    assert [(c.seq, c.data.get("status"), c.data["error"]) for c in in_flight] == [
        (1, None, IN_FLIGHT)
    ]
    assert in_flight[0].data["method"] == "POST" and in_flight[0].data["url"] == server.url("/slow")
    assert [(c.seq, c.data["status"], c.data.get("error")) for c in ended] == [(1, 200, None)]


class _FirstCallRowFails(wfnb.MemoryStore):
    """Its first write of a calls row refuses (``fail``) or never ends (``hang``)."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how, self.first = how, True

    async def write(self, batch: wfnb.Batch) -> None:
        if batch.calls and self.first:
            self.first = False
            if self.how == "fail":
                raise wfnb.StoreError("disk hiccup")
            await asyncio.Event().wait()  # until the step's timeout cancels it
        await super().write(batch)


@pytest.mark.parametrize(
    ("how", "error"),
    [
        ("fail", "not sent: the checkpoint store failed: disk hiccup"),
        ("hang", "not sent: the step timed out or was stopped first"),
    ],
)
def test_a_request_whose_row_cannot_be_written_first_is_not_sent_and_says_so(
    server: LocalServer, how: str, error: str
) -> None:
    server.routes["/once"] = [Reply(200, {"ok": True})]
    text = (
        f'steps:\n  call: {{http: {{url: "{server.url("/once")}"}}, timeout: 0.5,'
        " retry: {max_attempts: 2, delay: 0}}\n"
    )
    result, _, calls = run(text, wfnb.Engine(store=_FirstCallRowFails(how)))
    assert result.ok
    assert [(c.attempt, c.data.get("status"), c.data.get("error")) for c in calls] == [
        (1, None, error),
        (2, 200, None),
    ]
    assert len(server.seen("/once")) == 1  # the first attempt sent nothing


def test_an_invalid_url_fails_without_retry(server: LocalServer) -> None:
    text = 'steps:\n  get: {http: {url: "ftp://127.0.0.1/x"}, retry: {max_attempts: 3, delay: 0}}'
    result, steps, _ = run(text)
    assert not result.ok and len(steps) == 1


def test_a_body_that_cannot_be_sent_fails_without_retry(server: LocalServer) -> None:
    step = wfnb.Step(
        id="post",
        http={"url": server.url("/a"), "method": "POST", "json": {"s": {1, 2}}},  # a set
        retry={"max_attempts": 3, "delay": 0},
    )
    engine = wfnb.Engine()

    async def main() -> tuple[wfnb.RunResult, list[CallRecord]]:
        try:
            handle = await engine.start(wfnb.Workflow(name="bad", steps=[step]))
            result = await handle
            return result, await engine.store.get_calls(run_id=handle.id)
        finally:
            await engine.close()

    result, calls = arun(main())
    assert not result.ok and "cannot build the request" in result.error
    assert len(calls) == 1 and "cannot build" in calls[0].data["error"]
    assert server.seen("/a") == []


def test_engine_close_closes_its_client(server: LocalServer) -> None:
    server.routes["/a"] = [Reply(200, "ok")]
    engine = wfnb.Engine()

    async def main() -> bool:
        handle = await engine.start(wf(f'steps:\n  a: {{http: {{url: "{server.url("/a")}"}}}}'))
        await handle
        client = engine.http_client()
        await engine.close()
        return client.is_closed

    assert arun(main())


@pytest.mark.parametrize("value", ["2", "Wed, 21 Oct 2015 07:28:00 GMT", "soon"])
def test_retry_after_forms(value: str) -> None:
    from wfnb.steps.http import _retry_after

    got = _retry_after(value)
    assert {"2": 2.0, "soon": None}.get(value, 0.0) == got


def test_steps_share_one_pooled_client(server: LocalServer) -> None:
    server.routes["/a"] = [Reply(200, "ok")]
    engine = wfnb.Engine()
    text = f"""
steps:
  a: {{http: {{url: "{server.url("/a")}"}}}}
  b: {{http: {{url: "{server.url("/a")}"}}, needs: [a]}}
"""

    async def main() -> bool:
        first = engine.http_client()
        handle = await engine.start(wf(text))
        assert (await handle).ok
        same = engine.http_client() is first
        await engine.close()
        return same

    assert arun(main())
    ports = {r.client_port for r in server.seen("/a")}
    assert len(ports) == 1  # the second step reused the first one's connection
