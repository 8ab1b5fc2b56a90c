"""Real HTTP servers on 127.0.0.1 for the http and agent step tests.

`LocalServer` is a threaded `http.server` that the tests script per path: a route
is a list of replies used in turn (the last one repeats), or a function that
writes the reply itself (to stream, stall or echo). Every request is recorded, and
a test can wait for the n-th one, so no test sleeps to find out what happened.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    client_port: int

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: Any = b""  # bytes, str, or anything else sent as JSON
    headers: dict[str, str] = field(default_factory=dict)


Route = list[Reply] | Callable[["Handler", Seen], None]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet tests
        return None

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        seen = Seen(
            self.command,
            parts.path,
            parse_qs(parts.query),
            {k.lower(): v for k, v in self.headers.items()},
            self.rfile.read(length) if length else b"",
            self.client_address[1],
        )
        owner = self.server.owner
        route = owner.routes.get(parts.path)
        with owner.changed:
            owner.requests.append(seen)
            owner.changed.notify_all()
        if route is None:
            self.send(Reply(404, "no route"))
        elif callable(route):
            route(self, seen)
        else:
            count = sum(1 for r in owner.requests if r.path == parts.path)
            self.send(route[min(count, len(route)) - 1])

    do_GET = do_POST = do_PUT = do_DELETE = _handle

    def send(self, reply: Reply) -> None:
        body = reply.body
        headers = dict(reply.headers)
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            headers.setdefault("Content-Type", "application/json")
        data = body.encode() if isinstance(body, str) else body
        self.send_response(reply.status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: LocalServer


class LocalServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Seen] = []
        self.changed = threading.Condition()
        #: set at teardown: releases handlers that stall on purpose
        self.closing = threading.Event()
        self._server = Server(("127.0.0.1", 0), Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def seen(self, path: str) -> list[Seen]:
        with self.changed:
            return [r for r in self.requests if r.path == path]

    def wait_for(self, path: str, count: int = 1, timeout: float = 60) -> list[Seen]:
        """Block until ``path`` received ``count`` requests; those requests."""
        with self.changed:
            ok = self.changed.wait_for(lambda: len(self.seen(path)) >= count, timeout)
        assert ok, f"{path} got {len(self.seen(path))} requests, wanted {count}"
        return self.seen(path)

    def close(self) -> None:
        self.closing.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def server() -> Iterator[LocalServer]:
    local = LocalServer()
    yield local
    local.close()
