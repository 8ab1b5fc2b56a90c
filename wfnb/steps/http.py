"""`http` steps: one request through the engine's pooled httpx client.

This module and `wfnb.steps.agent` are the only importers of httpx, and httpx
errors become `StepError`s here, with what the retry loop needs to know: whether a
retry can help (connect errors, timeouts, 5xx and 429: yes; other 4xx, a body over
``max_bytes``, a malformed URL: no) and the wait a ``Retry-After`` asked for.

The client has no timeouts of its own: the step's ``timeout`` covers the whole
exchange (connecting, sending, every byte of the body), as the engine's retry loop
enforces it around the step. The body is streamed and counted as it arrives, so a
body over ``max_bytes`` is dropped mid-way instead of being read whole.

Every request is written down as a `CallRecord` twice: durably before it is sent
(with `IN_FLIGHT` as its error), so a process killed while it is in flight leaves
a row saying the request may have reached the server; and again, over that row,
as soon as it ends, however it ends (answered, refused, cut off by the step
timeout or a cancel). That is what the ``http_requests`` view shows.
"""

from __future__ import annotations

import asyncio
import email.utils
import http.cookiejar
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from wfnb.errors import StepError, StoreError
from wfnb.model import HttpSpec, Step
from wfnb.redact import credentials_in, hide, mask_headers, mask_url
from wfnb.steps.base import StepContext
from wfnb.store.base import CallRecord

#: How much of an error response's body an error message quotes.
EXCERPT_CHARS = 200

#: the error of a request's row while it is in flight; kept if its process dies
IN_FLIGHT = "sent, no end recorded: in flight, or its process stopped before it ended"


class ClientPool:
    """The engine's one `httpx.AsyncClient`. A client belongs to the event loop it
    was made on, so a new loop (a second `Engine.run_sync`) gets a new client."""

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop or self._client.is_closed:
            # No cookie jar: one client serves every step of every run, and a
            # cookie one server set must not ride along on another step's request.
            no_cookies = http.cookiejar.CookieJar(
                http.cookiejar.DefaultCookiePolicy(allowed_domains=[])
            )
            self._client = httpx.AsyncClient(timeout=None, cookies=no_cookies)
            self._loop = loop
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._loop is asyncio.get_running_loop():
            await client.aclose()


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    reason: str
    headers: dict[str, str]  # lower-case names, credentials masked
    body: bytes
    encoding: str

    @property
    def text(self) -> str:
        return self.body.decode(self.encoding, errors="replace")


async def execute(step: Step, ctx: StepContext) -> Any:
    spec = step.spec
    assert isinstance(spec, HttpSpec)
    rendered = ctx.render(
        {
            "url": spec.url,
            "headers": spec.headers,
            "params": spec.params,
            "json": spec.json_,
            "body": spec.body,
        }
    )
    headers = {str(k): str(v) for k, v in (rendered["headers"] or {}).items() if v is not None}
    credentials = credentials_in(headers)
    body = rendered["body"]
    reply = await exchange(
        ctx,
        kind="http",
        seq=1,
        method=spec.method.upper(),
        url=str(rendered["url"]),
        headers=headers,
        params={k: v for k, v in (rendered["params"] or {}).items() if v is not None},
        json_body=rendered["json"],
        content=body if isinstance(body, (str, bytes)) or body is None else None,
        form=body if isinstance(body, Mapping) else None,
        max_bytes=spec.max_bytes,
        accept_status=spec.accept_status,
    )
    output = {
        "status": reply.status,
        "headers": reply.headers,
        "body": reply.text,
        "json": _json_body(reply),
    }
    return hide(output, credentials)


async def exchange(
    ctx: StepContext,
    *,
    kind: str,
    seq: int,
    method: str,
    url: str,
    headers: dict[str, str],
    max_bytes: int,
    params: Mapping[str, Any] | None = None,
    json_body: Any = None,
    content: str | bytes | None = None,
    form: Mapping[str, Any] | None = None,
    accept_status: Sequence[int] = (),
    note: Callable[[Reply], dict[str, Any]] | None = None,
) -> Reply:
    """Send one request with ``Idempotency-Key`` (unless ``headers`` has its own),
    read the body up to ``max_bytes``, record the call (with ``note(reply)`` added
    to its data) and return the reply; raise a `StepError` for a status >= 400 that
    ``accept_status`` does not list, or for a failed exchange."""
    if not any(name.lower() == "idempotency-key" for name in headers):
        headers = {**headers, "Idempotency-Key": ctx.idempotency_key}
    credentials = credentials_in(headers)
    client = ctx.runtime.http_client()
    data: dict[str, Any] = {"method": method, "url": mask_url(hide(url, credentials))}
    started, clock = time.time(), time.monotonic()
    reply: Reply | None = None
    sent = False
    size = 0
    error: StepError | None = None
    try:
        try:
            request = client.build_request(
                method,
                url,
                headers=headers,
                params=params or None,
                json=json_body,
                content=content,
                data=form,
            )
        except (TypeError, ValueError) as exc:  # a json body with a set, say
            raise StepError(
                hide(f"cannot build the request: {type(exc).__name__}: {exc}", credentials),
                step_id=ctx.step_id,
                retryable=False,
            ) from None
        data["url"] = mask_url(hide(str(request.url), credentials))
        ahead = CallRecord(
            ctx.run_id, ctx.step_id, ctx.attempt, seq, kind, started, {**data, "error": IN_FLIGHT}
        )
        await ctx.runtime.record_call(ahead)  # durable before a byte goes out
        sent = True
        response = await client.send(request, stream=True)
        try:
            data["status"] = response.status_code
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise _too_large(ctx, max_bytes, f"it declares {int(declared):,} bytes")
            chunks = []
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise _too_large(ctx, max_bytes, f"{size:,} bytes read so far")
                chunks.append(chunk)
        finally:
            await response.aclose()
        reply = Reply(
            response.status_code,
            response.reason_phrase,
            mask_headers((k.lower(), v) for k, v in response.headers.multi_items()),
            b"".join(chunks),
            response.encoding or "utf-8",
        )
        if note is not None:
            data.update(note(reply))
        if reply.status >= 400 and reply.status not in accept_status:
            raise _status_error(ctx, method, data["url"], reply, credentials)
    except StepError as exc:
        error = exc
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        error = _translate(exc, ctx, data["url"], credentials)
    except asyncio.CancelledError:
        stopped = "the step timed out or was stopped"
        data.update(error=f"cut off: {stopped}" if sent else f"not sent: {stopped} first")
        raise
    except StoreError as exc:  # the row could not be written first: nothing was sent
        data.update(error=f"not sent: the checkpoint store failed: {exc}")
        raise
    finally:
        data.update(duration_ms=(time.monotonic() - clock) * 1000, bytes=size)
        if error is not None:
            data["error"] = str(error)
        call = CallRecord(ctx.run_id, ctx.step_id, ctx.attempt, seq, kind, started, data)
        # Written even when the step is being cancelled: the row must not be lost.
        await asyncio.shield(ctx.runtime.record_call(call))
    if error is not None:
        raise error
    assert reply is not None
    return reply


def _json_body(reply: Reply) -> Any:
    """The parsed body when the response says it is JSON; None otherwise."""
    kind = reply.headers.get("content-type", "").split(";")[0].strip().lower()
    if not (kind == "application/json" or kind.endswith("+json")):
        return None
    try:
        return json.loads(reply.text)
    except ValueError:
        return None


def _too_large(ctx: StepContext, max_bytes: int, seen: str) -> StepError:
    return StepError(
        f"the response body is over max_bytes ({max_bytes:,} bytes): {seen}; "
        "raise `max_bytes` on the step to accept it",
        step_id=ctx.step_id,
        retryable=False,
    )


def _status_error(
    ctx: StepContext, method: str, url: str, reply: Reply, credentials: list[str]
) -> StepError:
    excerpt = " ".join(reply.text[: EXCERPT_CHARS * 2].split())[:EXCERPT_CHARS]
    retryable = reply.status >= 500 or reply.status == 429
    message = f"HTTP {reply.status} {reply.reason} from {method} {url}"
    return StepError(
        hide(f"{message}: {excerpt}" if excerpt else message, credentials),
        step_id=ctx.step_id,
        retryable=retryable,
        retry_after=_retry_after(reply.headers.get("retry-after")) if retryable else None,
    )


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


#: Exchanges that would fail the same way again: a retry cannot help.
_PERMANENT = (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.InvalidURL)


def _translate(
    exc: httpx.HTTPError | httpx.InvalidURL, ctx: StepContext, url: str, credentials: list[str]
) -> StepError:
    what = {
        httpx.ConnectError: "cannot connect",
        httpx.TimeoutException: "timed out",
    }
    label = next((text for cls, text in what.items() if isinstance(exc, cls)), "request failed")
    detail = str(exc) or type(exc).__name__
    return StepError(
        hide(f"{label}: {url}: {detail}", credentials),
        step_id=ctx.step_id,
        retryable=not isinstance(exc, _PERMANENT),
    )
