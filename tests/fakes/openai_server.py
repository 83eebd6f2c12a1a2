"""A fake OpenAI API server for tests: scripted replies in order, every request recorded.

A real HTTP server on 127.0.0.1 (an ephemeral port, a thread), spoken to by the real
``openai`` client. It serves ``POST /v1/chat/completions`` and ``POST /v1/responses`` from a
queue of replies the test scripts in order, and fails loudly when misused:

- a request with no reply scripted, or for another endpoint than the next reply's, gets
  HTTP 421 (Misdirected Request: an answer clients do not retry, so misuse fails at once)
  with a clear message *and* is noted in ``errors``;
- leaving the context with ``errors`` or with unconsumed replies raises ``AssertionError``.

Example:
    >>> import asyncio
    >>> async def demo() -> str:
    ...     async with FakeOpenAIServer() as server:
    ...         server.add(chat_text("hi"))
    ...         reply = await server.client().chat.completions.create(model="m", messages=[])
    ...         return reply.choices[0].message.content or ""
    >>> asyncio.run(demo())
    'hi'
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import deque
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import openai

__all__ = [
    "CHAT",
    "RESPONSES",
    "FakeOpenAIServer",
    "Reply",
    "Request",
    "chat_json",
    "chat_refusal",
    "chat_reply",
    "chat_text",
    "chat_tool_calls",
    "computer_call_item",
    "function_call_item",
    "http_error",
    "message_item",
    "raw_reply",
    "reasoning_item",
    "refusal_item",
    "responses_reply",
    "slow",
    "tool_call",
]

CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"
TEST_KEY = "sk-test-fake-key-0123456789"
"""The API key ``FakeOpenAIServer.client`` uses (tests can check it is never logged)."""

_ids = itertools.count(1)


def _id(prefix: str) -> str:
    return f"{prefix}_{next(_ids)}"


@dataclass(frozen=True)
class Reply:
    """A scripted reply: for which endpoint, with what status and JSON body."""

    path: str
    body: dict[str, Any]
    status: int = 200
    raw: bytes | None = None
    """Sent instead of ``body``, as ``content_type`` (a reply that is not JSON)."""
    stream_bytes: int = 0
    """When set, ``raw`` is sent over and over, chunked (no ``Content-Length``), until this
    many bytes are sent or the client hangs up (a huge reply)."""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    """Extra response headers, e.g. ``(("Retry-After", "1"),)``."""
    delay_s: float = 0.0
    """Hold the reply this long before sending it (a slow server, for client timeouts);
    closing the server ends the wait."""


@dataclass(frozen=True)
class Request:
    """A request the server received."""

    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    """Header names in lower case."""


# ---------------------------------------------------------------------- chat completions


def tool_call(
    name: str, arguments: dict[str, Any] | str, *, id: str | None = None
) -> dict[str, Any]:
    """One tool call of a chat reply; ``arguments`` as a dict, or a raw (maybe broken) string."""
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {
        "id": id or _id("call"),
        "type": "function",
        "function": {"name": name, "arguments": args},
    }


def chat_reply(
    *,
    content: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    refusal: str | None = None,
    finish_reason: str | None = None,
    input_tokens: int = 100,
    output_tokens: int = 20,
    model: str | None = None,
) -> Reply:
    """A Chat Completions reply (the model defaults to the one requested)."""
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": refusal}
    if tool_calls:
        message["tool_calls"] = tool_calls
    body: dict[str, Any] = {
        "id": _id("chatcmpl"),
        "object": "chat.completion",
        "created": 0,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": finish_reason or ("tool_calls" if tool_calls else "stop"),
            }
        ],
        "usage": {
            "prompt_tokens": input_tokens,
            "completion_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
        },
    }
    if model is not None:
        body["model"] = model
    return Reply(CHAT, body)


def chat_tool_calls(*calls: dict[str, Any], content: str | None = None, **kw: Any) -> Reply:
    """A chat reply calling tools (build each with ``tool_call``)."""
    return chat_reply(content=content, tool_calls=list(calls), **kw)


def chat_text(content: str, **kw: Any) -> Reply:
    """A chat reply with text only (also: a malformed structured reply)."""
    return chat_reply(content=content, **kw)


def chat_json(data: Any, **kw: Any) -> Reply:
    """A structured chat reply: ``data`` as JSON text."""
    return chat_reply(content=json.dumps(data), **kw)


def chat_refusal(refusal: str, **kw: Any) -> Reply:
    """A chat reply refusing, in ``message.refusal``."""
    return chat_reply(refusal=refusal, **kw)


# ---------------------------------------------------------------------- responses


def computer_call_item(
    action: dict[str, Any] | list[dict[str, Any]],
    *,
    call_id: str | None = None,
    safety_checks: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A ``computer_call`` output item: one ``action`` or a batch of ``actions``."""
    item: dict[str, Any] = {
        "type": "computer_call",
        "id": _id("cu"),
        "call_id": call_id or _id("call"),
        "status": "completed",
        "pending_safety_checks": safety_checks or [],
    }
    item["actions" if isinstance(action, list) else "action"] = action
    return item


def function_call_item(
    name: str, arguments: dict[str, Any] | str, *, call_id: str | None = None
) -> dict[str, Any]:
    """A ``function_call`` output item."""
    return {
        "type": "function_call",
        "id": _id("fc"),
        "call_id": call_id or _id("call"),
        "name": name,
        "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
        "status": "completed",
    }


def message_item(text: str) -> dict[str, Any]:
    """An assistant ``message`` output item with text."""
    return {
        "type": "message",
        "id": _id("msg"),
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def refusal_item(refusal: str) -> dict[str, Any]:
    """An assistant ``message`` output item that refuses."""
    return {
        "type": "message",
        "id": _id("msg"),
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "refusal", "refusal": refusal}],
    }


def reasoning_item(summary: str) -> dict[str, Any]:
    """A ``reasoning`` output item with a summary."""
    return {
        "type": "reasoning",
        "id": _id("rs"),
        "summary": [{"type": "summary_text", "text": summary}],
    }


def responses_reply(
    *items: dict[str, Any],
    id: str | None = None,
    status: str = "completed",
    input_tokens: int = 100,
    output_tokens: int = 20,
    model: str | None = None,
) -> Reply:
    """A Responses API reply with these output items (the model defaults to the one asked)."""
    body: dict[str, Any] = {
        "id": id or _id("resp"),
        "object": "response",
        "created_at": 0,
        "status": status,
        "output": list(items),
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
    }
    if model is not None:
        body["model"] = model
    return Reply(RESPONSES, body)


def raw_reply(path: str, data: bytes, content_type: str = "text/html") -> Reply:
    """A 200 reply of ``data`` as sent, e.g. a proxy's HTML page instead of JSON."""
    return Reply(path, {}, raw=data, content_type=content_type)


def http_error(
    path: str, status: int, message: str, *, headers: dict[str, str] | None = None
) -> Reply:
    """An error reply in the OpenAI error format, with extra ``headers`` (``Retry-After``)."""
    body = {"error": {"message": message, "type": "test_error", "code": None}}
    return Reply(path, body, status, headers=tuple((headers or {}).items()))


def slow(reply: Reply, delay_s: float) -> Reply:
    """``reply``, sent only after ``delay_s`` seconds (past a client's timeout)."""
    return replace(reply, delay_s=delay_s)


# ---------------------------------------------------------------------- the server


@dataclass
class _State:
    replies: deque[Reply] = field(default_factory=deque)
    requests: list[Request] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    closing: threading.Event = field(default_factory=threading.Event)


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
        if reply.delay_s and state.closing.wait(reply.delay_s):
            return  # the server is closing: the client gave up long ago
        if reply.raw is not None and reply.stream_bytes:
            self._send_stream(reply.raw, reply.stream_bytes, reply.content_type)
            return
        if reply.raw is not None:
            self._send_bytes(reply.status, reply.raw, reply.content_type, reply.headers)
            return
        out = dict(reply.body)
        if reply.status == 200 and "model" not in out:
            out["model"] = body.get("model", "fake-model")
        self._send(reply.status, out, reply.headers)

    def _fail(self, message: str) -> None:
        with self.server.state.lock:
            self.server.state.errors.append(message)
        self._send(421, {"error": {"message": f"fake OpenAI server: {message}", "type": "fake"}})

    def _send(
        self, status: int, body: dict[str, Any], headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
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
        self,
        status: int,
        data: bytes,
        content_type: str,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout): nothing to tell it


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    state: _State


class FakeOpenAIServer:
    """An OpenAI-compatible HTTP server serving scripted replies; see the module docstring."""

    def __init__(self) -> None:
        self._state = _State()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._clients: list[openai.AsyncOpenAI] = []

    # -- lifecycle

    def start(self) -> FakeOpenAIServer:
        """Start serving on 127.0.0.1 on a free port."""
        server = _Server(("127.0.0.1", 0), _Handler)
        server.state = self._state
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.02,), name="fake-openai", daemon=True
        )
        self._thread.start()
        return self

    async def close(self) -> None:
        """Close the clients made here and stop the server."""
        self._state.closing.set()
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
            raise AssertionError("fake OpenAI server misused:\n- " + "\n- ".join(problems))

    async def __aenter__(self) -> FakeOpenAIServer:
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
        """The API base URL, ``http://127.0.0.1:<port>/v1``."""
        if self._server is None:
            raise RuntimeError("the fake OpenAI server is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def client(self, **kw: Any) -> openai.AsyncOpenAI:
        """A real ``AsyncOpenAI`` pointed here, without retries; closed with the server."""
        kw.setdefault("max_retries", 0)
        kw.setdefault("timeout", 10.0)
        client = openai.AsyncOpenAI(api_key=TEST_KEY, base_url=self.base_url, **kw)
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

    def bodies(self, path: str | None = None) -> list[dict[str, Any]]:
        """The JSON bodies of the requests received (to ``path``, when given)."""
        return [r.body for r in self.requests if path is None or r.path == path]
