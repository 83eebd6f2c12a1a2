"""The SDK against a real HTTP server on loopback that misbehaves on purpose: connections
dropped before the answer, refused, 429s, and event streams cut again and again. What is
safe to repeat is repeated; what may have done its work is not; every failure ends as one
of the SDK's typed errors, never a raw transport exception."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.domain import Event, EventKind, TaskInfo, TaskSpec, TaskState
from orchestrator.sdk import AsyncClient, Client, Retry, UnavailableError, _stream
from orchestrator.sdk._http import Call, _timeout, calls, workflow_text

Behaviour = Callable[[BaseHTTPRequestHandler], None]


def drop(h: BaseHTTPRequestHandler) -> None:
    """Read the request, answer nothing, close the connection."""
    h.close_connection = True


def answer(status: int, body: bytes = b"", ctype: str = "application/json", **headers: str):
    def send(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            h.send_header(k.replace("_", "-"), v)
        h.end_headers()
        h.wfile.write(body)

    return send


def stream(lines: list[str], then_wait_s: float = 0.0) -> Behaviour:
    """An SSE answer with ``lines``, held open ``then_wait_s``, then cut (no final chunk)."""

    def send(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.end_headers()
        h.wfile.write("".join(lines).encode())
        h.wfile.flush()
        time.sleep(then_wait_s)  # the connection's lifetime is what is under test
        h.close_connection = True

    return send


class Scripted:
    """A loopback HTTP server answering each path with its queued behaviours in turn (the
    last one repeats), recording every request it read."""

    def __init__(self) -> None:
        self.script: dict[str, deque[Behaviour]] = defaultdict(deque)
        self.seen: list[tuple[str, str]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                path = self.path.split("?")[0]
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                owner.seen.append((self.command, path))
                queue = owner.script[path]
                behave = queue.popleft() if len(queue) > 1 else queue[0]
                behave(self)

            do_GET = do_POST = do_PUT = do_DELETE = _any

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def on(self, path: str, *behaviours: Behaviour) -> None:
        self.script[path].extend(behaviours)

    def count(self, method: str, path: str) -> int:
        return self.seen.count((method, path))

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Scripted]:
    s = Scripted()
    try:
        yield s
    finally:
        s.close()


FAST = Retry(attempts=3, backoff_s=0.01, max_wait_s=0.05)


def _task(state: TaskState = TaskState.SUCCEEDED) -> bytes:
    info = TaskInfo(id="task-1", agent_id="agent-1", spec=TaskSpec(description="d"), state=state)
    return info.model_dump_json().encode()


def _sse(seq: int) -> str:
    e = Event(seq=seq, kind=EventKind.LOG, task_id="task-1", data={"n": seq})
    return f"id: {seq}\ndata: {e.model_dump_json()}\n\n"


def test_a_read_is_sent_again_after_the_connection_broke(server: Scripted) -> None:
    server.on("/v1/tasks/task-1", drop, drop, answer(200, _task()))
    with Client(server.url, "key", retry=FAST) as c:
        assert c.task("task-1").state is TaskState.SUCCEEDED
    assert server.count("GET", "/v1/tasks/task-1") == 3


def test_a_post_that_may_have_run_is_not_sent_again(server: Scripted) -> None:
    server.on("/v1/tasks/task-1/cancel", drop, answer(200, _task(TaskState.CANCELLED)))
    with Client(server.url, "key", retry=FAST) as c, pytest.raises(UnavailableError) as e:
        c.call(calls.cancel("task-1"))
    assert e.value.status == 0 and e.value.code == "unreachable"
    assert "may have been carried out" in str(e.value)
    assert server.count("POST", "/v1/tasks/task-1/cancel") == 1


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nothing listens there now


def test_no_server_is_a_typed_error_after_the_retries_and_not_healthy() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    with Client(url, "key", retry=FAST) as c:
        with pytest.raises(UnavailableError) as e:
            c.call(calls.cancel("task-1"))  # never sent: safe to try again, even a POST
        assert e.value.code == "unreachable" and "carried out" not in str(e.value)
        assert isinstance(e.value.__cause__, httpx.ConnectError)
        assert c.healthy() is False


async def test_the_async_client_retries_alike(server: Scripted) -> None:
    server.on("/v1/tasks/task-1", drop, answer(200, _task()))
    server.on("/healthz", answer(503, b"{}"))
    async with AsyncClient(server.url, "key", retry=FAST) as c:
        assert (await c.task("task-1")).state is TaskState.SUCCEEDED
        assert await c.healthy() is False
    assert server.count("GET", "/healthz") == 1  # a probe: not retried


def test_artifacts_download_retries_429_and_writes_the_file_whole(
    server: Scripted, tmp_path: Path
) -> None:
    path = "/v1/tasks/task-1/artifacts"
    server.on("/v1/tasks/task-1", answer(200, _task()))
    server.on(path, answer(429, b"{}", Retry_After="0"), drop, answer(200, b"PK-zip", "x/zip"))
    with Client(server.url, "key", retry=FAST) as c:
        out = c.task("task-1").download_artifacts(tmp_path / "a.zip")
    assert out.read_bytes() == b"PK-zip" and server.count("GET", path) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["a.zip"]  # no partial file left


def test_an_event_stream_cut_often_but_after_working_goes_on(
    server: Scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_stream, "HEALTHY_S", 0.2)
    path = "/v1/tasks/task-1/events/stream"
    quiet = stream([": stream of task task-1\n\n"], then_wait_s=0.3)  # healthy, then cut
    cuts = [quiet] * (_stream.RECONNECTS + 3)
    server.on(path, stream([_sse(1)]), *cuts, stream([_sse(2)]))
    running = answer(200, _task(TaskState.RUNNING))  # c.task(), then after each early end
    server.on("/v1/tasks/task-1", *[running] * (2 + len(cuts)), answer(200, _task()))
    with Client(server.url, "key", retry=FAST) as c:
        got = [e.seq for e in c.task("task-1").stream()]
    assert got == [1, 2]


def test_an_event_stream_that_keeps_failing_at_once_gives_up(server: Scripted) -> None:
    server.on("/v1/tasks/task-1/events/stream", drop)
    with Client(server.url, "key", retry=FAST) as c:
        with pytest.raises(UnavailableError) as e:
            list(_stream.events_sync(c._http, FAST, "task-1"))
    assert e.value.code == "stream_lost"
    assert server.count("GET", "/v1/tasks/task-1/events/stream") == _stream.RECONNECTS + 1


def test_a_call_repr_never_shows_its_body() -> None:
    from orchestrator.domain import AgentSpec

    spec = AgentSpec.model_validate(
        {"name": "a", "role": "r", "brain": {"kind": "openai", "api_key": "sk-SECRET"}}
    )
    call = calls.create_agent(spec)
    assert call.body["brain"]["api_key"] == "sk-SECRET"  # sent, but never shown
    assert "sk-SECRET" not in repr(call)


def test_a_client_without_a_timeout_keeps_none_for_slow_calls() -> None:
    with httpx.Client(timeout=None) as http:
        slow = Call("POST", "/v1/agents", lambda r: None, timeout=180)
        assert _timeout(http, slow).read is None
    with httpx.Client(timeout=5) as http:
        assert _timeout(http, slow).read == 180


def test_workflow_text_of_long_text_and_missing_files(tmp_path: Path) -> None:
    one_line = json.dumps({"agent": {"name": "a" * 5000}})
    assert workflow_text(one_line) == one_line
    with pytest.raises(FileNotFoundError):
        workflow_text(str(tmp_path / "missing.yaml"))


def test_a_callers_http_client_is_aimed_at_the_api_and_left_open(server: Scripted) -> None:
    seen: list[str] = []

    def record(request: httpx.Request) -> None:
        seen.append(request.headers.get("authorization", ""))

    http = httpx.Client(event_hooks={"request": [record]})
    server.on("/v1/tasks/task-1", answer(200, _task()))
    with Client(server.url, "caller-key", retry=FAST, http=http) as c:
        assert c.task("task-1").state is TaskState.SUCCEEDED
    assert seen == ["Bearer caller-key"]
    assert not http.is_closed  # the caller's to close
    http.close()
