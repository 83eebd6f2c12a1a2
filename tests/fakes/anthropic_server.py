"""A fake Anthropic Messages API server for tests: scripted replies in order, every request
recorded.

A real HTTP server on 127.0.0.1 (an ephemeral port, a thread), spoken to by the real
``anthropic`` client. It serves ``POST /v1/messages`` from a queue of replies the test
scripts in order (JSON bodies with any status and headers, or raw bytes that are not JSON)
and fails loudly when misused:

- a request with no reply scripted, for another path, or whose body is not JSON gets
  HTTP 421 (Misdirected Request: an answer clients do not retry, so misuse fails at once)
  with a clear message *and* is noted in ``errors``;
- leaving the context with ``errors`` or with unconsumed replies raises ``AssertionError``.

Building replies:

- ``message(*blocks, stop_reason=..., input_tokens=..., cache_read=...)``: a Messages API
  reply; blocks from ``text(...)``, ``tool_use(name, input)``, ``computer(action, ...)``,
  ``bash(command)``, ``editor(command, path, ...)``; ``text_message("...")`` for a reply
  that is only text (the end of a task), ``refusal("...")`` for ``stop_reason: refusal``.
- ``error_reply(status, type, message, retry_after=...)``: the API's error body
  (``{"type": "error", "error": {...}}``); ``overloaded()`` (529), ``rate_limited()`` (429).
- ``raw_reply(b"...", content_type)``: a reply that is not JSON (a proxy's HTML page).

``server.base_url`` is ``http://127.0.0.1:<port>`` (no ``/v1``: the anthropic client adds
it); ``server.client()`` is a real ``anthropic.AsyncAnthropic`` pointed here (no retries).
Each ``Request`` has the JSON ``body``, the ``headers`` (lower-case names), and ``betas``
(the ``anthropic-beta`` header, split) and ``api_key`` (from ``x-api-key`` or a bearer
``authorization``) for convenience.

Example:
    >>> import asyncio
    >>> async def demo() -> tuple[str, list[str]]:
    ...     async with FakeAnthropicServer() as server:
    ...         server.add(text_message("hi"))
    ...         reply = await server.client().beta.messages.create(
    ...             model="claude-x", max_tokens=16, messages=[], betas=["computer-use-2025-01-24"]
    ...         )
    ...         return reply.content[0].text, server.requests[0].betas
    >>> asyncio.run(demo())
    ('hi', ['computer-use-2025-01-24'])
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import anthropic

__all__ = [
    "MESSAGES",
    "TEST_KEY",
    "FakeAnthropicServer",
    "Reply",
    "Request",
    "bash",
    "computer",
    "editor",
    "error_reply",
    "message",
    "overloaded",
    "rate_limited",
    "raw_reply",
    "refusal",
    "text",
    "text_message",
    "tool_use",
]

MESSAGES = "/v1/messages"
TEST_KEY = "sk-ant-test-fake-key-0123456789"
"""The API key ``FakeAnthropicServer.client`` uses (tests can check it is never logged)."""

_ids = itertools.count(1)


def _id(prefix: str) -> str:
    return f"{prefix}_{next(_ids):04d}"


@dataclass(frozen=True)
class Reply:
    """A scripted reply: for which path, with what status, JSON body and headers."""

    body: dict[str, Any]
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    """Extra response headers (``retry-after``, ...)."""
    raw: bytes | None = None
    """Sent instead of ``body``, as ``content_type`` (a reply that is not JSON)."""
    stream_bytes: int = 0
    """When set, ``raw`` is sent over and over, chunked (no ``Content-Length``), until this
    many bytes are sent or the client hangs up (a huge reply)."""
    content_type: str = "application/json"
    path: str = MESSAGES


@dataclass(frozen=True)
class Request:
    """A request the server received."""

    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    """Header names in lower case."""

    @property
    def betas(self) -> list[str]:
        """The ``anthropic-beta`` header's entries (none: empty)."""
        value = self.headers.get("anthropic-beta", "")
        return [b.strip() for b in value.split(",") if b.strip()]

    @property
    def api_key(self) -> str | None:
        """The key the client sent: ``x-api-key``, else a bearer ``authorization``."""
        if "x-api-key" in self.headers:
            return self.headers["x-api-key"]
        auth = self.headers.get("authorization", "")
        return auth.removeprefix("Bearer ").strip() or None if auth else None


# ---------------------------------------------------------------------- content blocks


def text(value: str) -> dict[str, Any]:
    """A text content block."""
    return {"type": "text", "text": value}


def tool_use(name: str, input: dict[str, Any] | Any, *, id: str | None = None) -> dict[str, Any]:
    """A ``tool_use`` block calling ``name`` with ``input`` (any JSON, even a bad one)."""
    return {"type": "tool_use", "id": id or _id("toolu"), "name": name, "input": input}


def computer(action: str, *, id: str | None = None, **input: Any) -> dict[str, Any]:
    """A ``tool_use`` of the computer tool: ``computer("left_click", coordinate=[5, 6])``."""
    return tool_use("computer", {"action": action, **input}, id=id)


def bash(
    command: str | None = None, *, restart: bool = False, id: str | None = None
) -> dict[str, Any]:
    """A ``tool_use`` of the bash tool (``restart=True``: a restart request)."""
    data: dict[str, Any] = {"restart": True} if restart else {"command": command}
    return tool_use("bash", data, id=id)


def editor(
    command: str,
    path: str,
    *,
    name: str = "str_replace_based_edit_tool",
    id: str | None = None,
    **input: Any,
) -> dict[str, Any]:
    """A ``tool_use`` of the text-editor tool: ``editor("create", "/tmp/a", file_text="x")``."""
    return tool_use(name, {"command": command, "path": path, **input}, id=id)


# ---------------------------------------------------------------------- replies


def message(
    *blocks: dict[str, Any],
    stop_reason: str | None = None,
    input_tokens: int = 100,
    output_tokens: int = 20,
    cache_creation: int = 0,
    cache_read: int = 0,
    model: str | None = None,
    id: str | None = None,
) -> Reply:
    """A Messages API reply with these content blocks; ``stop_reason`` defaults to
    ``tool_use`` when a block calls a tool, else ``end_turn``; the model to the one asked."""
    if stop_reason is None:
        calls = any(b.get("type") == "tool_use" for b in blocks)
        stop_reason = "tool_use" if calls else "end_turn"
    body: dict[str, Any] = {
        "id": id or _id("msg"),
        "type": "message",
        "role": "assistant",
        "content": list(blocks),
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": cache_creation,
            "cache_read_input_tokens": cache_read,
        },
    }
    if model is not None:
        body["model"] = model
    return Reply(body)


def text_message(value: str, **kw: Any) -> Reply:
    """A reply of text only (``end_turn``): a task's final report, or a JSON answer."""
    return message(text(value), **kw)


def refusal(value: str = "I can't help with that.", **kw: Any) -> Reply:
    """A reply that refuses (``stop_reason: refusal``)."""
    return message(text(value), stop_reason="refusal", **kw)


def error_reply(
    status: int, type: str, message: str, *, retry_after: float | str | None = None
) -> Reply:
    """An error in the API's format, ``{"type": "error", "error": {"type", "message"}}``,
    with ``retry-after`` when given."""
    headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
    body = {"type": "error", "error": {"type": type, "message": message}}
    return Reply(body, status=status, headers=headers)


def overloaded(message: str = "Overloaded", **kw: Any) -> Reply:
    """HTTP 529 ``overloaded_error``."""
    return error_reply(529, "overloaded_error", message, **kw)


def rate_limited(message: str = "Rate limited", **kw: Any) -> Reply:
    """HTTP 429 ``rate_limit_error``."""
    return error_reply(429, "rate_limit_error", message, **kw)


def raw_reply(data: bytes, content_type: str = "text/html", status: int = 200) -> Reply:
    """A reply of ``data`` as sent, e.g. a proxy's HTML page instead of JSON."""
    return Reply({}, status=status, raw=data, content_type=content_type)


# ---------------------------------------------------------------------- the server


@dataclass
class _State:
    replies: deque[Reply] = field(default_factory=deque)
    requests: list[Request] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet; the tests read ``requests`` instead

    def do_GET(self) -> None:
        self._fail(f"unexpected GET {self.path}")

    def do_POST(self) -> None:
        state = self.server.state
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError as e:
            self._fail(f"request body to {self.path} is not JSON: {e}")
            return
        with state.lock:
            headers = {k.lower(): v for k, v in self.headers.items()}
            state.requests.append(Request(self.path, body, headers))
            reply = state.replies[0] if state.replies else None
            if reply is None:
                error = f"unexpected request POST {self.path}: no reply scripted"
            elif reply.path != self.path:
                error = f"unexpected request POST {self.path}: the next reply is for {reply.path}"
            else:
                error = None
                state.replies.popleft()
        if error is not None or reply is None:
            self._fail(error or "no reply")
            return
        if reply.raw is not None and reply.stream_bytes:
            self._send_stream(reply.raw, reply.stream_bytes, reply.content_type)
            return
        if reply.raw is not None:
            self._send_bytes(reply.status, reply.raw, reply.content_type, reply.headers)
            return
        out = dict(reply.body)
        if reply.status == 200 and out.get("type") == "message" and "model" not in out:
            out["model"] = body.get("model", "fake-model")
        self._send(reply.status, out, reply.headers)

    def _fail(self, message: str) -> None:
        with self.server.state.lock:
            self.server.state.errors.append(message)
        body = {"type": "error", "error": {"type": "fake", "message": f"fake server: {message}"}}
        self._send(421, body, {})

    def _send(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
        self._send_bytes(status, json.dumps(body).encode(), "application/json", headers)

    def _send_stream(self, data: bytes, total: int, content_type: str) -> None:
        """``data`` repeated in chunks up to ``total`` bytes; stops when the client hangs up."""
        try:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            sent = 0
            while sent < total:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                sent += len(data)
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading: what a capped reader does
        self.close_connection = True

    def _send_bytes(
        self, status: int, data: bytes, content_type: str, headers: dict[str, str]
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    state: _State


class FakeAnthropicServer:
    """An Anthropic-compatible HTTP server serving scripted replies; see the module docstring.

    Use it as ``async with FakeAnthropicServer() as server:`` (verified on a clean exit), or
    ``start()``, then ``await close()`` and ``verify()``.
    """

    def __init__(self) -> None:
        self._state = _State()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._clients: list[anthropic.AsyncAnthropic] = []

    # -- lifecycle

    def start(self) -> FakeAnthropicServer:
        """Start serving on 127.0.0.1 on a free port."""
        server = _Server(("127.0.0.1", 0), _Handler)
        server.state = self._state
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.02,), name="fake-anthropic", daemon=True
        )
        self._thread.start()
        return self

    async def close(self) -> None:
        """Close the clients made here and stop the server."""
        for client in self._clients:
            await client.close()
        self._clients.clear()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def verify(self) -> None:
        """Raise ``AssertionError`` on unexpected requests or unconsumed replies."""
        problems = list(self._state.errors)
        if self._state.replies:
            left = [f"{r.path} ({r.status})" for r in self._state.replies]
            problems.append(f"{len(left)} scripted repl(ies) never requested: {left}")
        if problems:
            raise AssertionError("fake Anthropic server misused:\n- " + "\n- ".join(problems))

    async def __aenter__(self) -> FakeAnthropicServer:
        return self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
        if exc_type is None:
            self.verify()

    # -- use

    @property
    def base_url(self) -> str:
        """The API's base URL, ``http://127.0.0.1:<port>`` (the client adds ``/v1/...``)."""
        if self._server is None:
            raise RuntimeError("the fake Anthropic server is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def client(self, **kw: Any) -> anthropic.AsyncAnthropic:
        """A real ``AsyncAnthropic`` pointed here with ``TEST_KEY``, without retries; closed
        with the server."""
        kw.setdefault("max_retries", 0)
        kw.setdefault("timeout", 10.0)
        kw.setdefault("api_key", TEST_KEY)
        client = anthropic.AsyncAnthropic(base_url=self.base_url, **kw)
        self._clients.append(client)
        return client

    def add(self, *replies: Reply) -> None:
        """Script replies, served in this order."""
        with self._state.lock:
            self._state.replies.extend(replies)

    @property
    def requests(self) -> list[Request]:
        """Every request received, in order."""
        with self._state.lock:
            return list(self._state.requests)

    @property
    def errors(self) -> list[str]:
        """What went wrong (unexpected requests); ``clear_errors`` after asserting on them."""
        with self._state.lock:
            return list(self._state.errors)

    def clear_errors(self) -> None:
        """Forget the errors so far (for tests of misuse itself)."""
        with self._state.lock:
            self._state.errors.clear()

    @property
    def pending(self) -> int:
        """How many scripted replies are still to be served."""
        with self._state.lock:
            return len(self._state.replies)

    def bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies of the requests received, in order."""
        return [r.body for r in self.requests]
