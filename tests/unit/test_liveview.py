"""LiveViewProxy against throwaway unix-socket servers (no desktop, no browser): only
requests carrying the token get through, one per connection, and a websocket is spliced."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from orchestrator.desktop._liveview import LiveViewProxy

TOKEN = "t0ken-for-tests_0123456789abcdef"
SWITCH = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
PAGE = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nnoVNC"


async def eventually(probe: Callable[[], object], *, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not probe():
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.01)


def ws_request(path: str = f"/{TOKEN}/websockify") -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: k\r\n\r\n"
    ).encode()


@dataclass
class Upstream:
    """A unix-socket server standing in for websockify: keep-alive HTTP that answers every
    request it reads (so a second request on one connection would be served), or a
    websocket upgrade followed by an echo. It records what reached it."""

    path: Path
    connections: int = 0
    received: list[bytes] = field(default_factory=list)
    server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.received.append(head)
                if b"upgrade: websocket" in head.lower():
                    writer.write(SWITCH)
                    while data := await reader.read(65536):
                        writer.write(data)
                        await writer.drain()
                    break
                writer.write(PAGE)  # keep-alive: whatever Connection says
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def open(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(self.path))
        return s


@pytest.fixture
def sockdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="lv-"))  # short: unix socket paths max 107 bytes
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def upstream(sockdir: Path) -> AsyncIterator[Upstream]:
    up = Upstream(sockdir / "novnc.sock")
    up.server = await asyncio.start_unix_server(up.handle, path=up.path)
    try:
        yield up
    finally:
        up.server.close()
        await up.server.wait_closed()


@pytest.fixture
async def proxy(upstream: Upstream) -> AsyncIterator[LiveViewProxy]:
    p = LiveViewProxy(upstream.open, TOKEN)
    await p.start()
    try:
        yield p
    finally:
        await p.close()


async def _connect(proxy: LiveViewProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", proxy.port)


async def _exchange(proxy: LiveViewProxy, request: bytes) -> bytes:
    reader, writer = await _connect(proxy)
    writer.write(request)
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data


# ---------------------------------------------------------------------- the token


@pytest.mark.parametrize(
    "request_line",
    [
        b"GET /vnc.html HTTP/1.1",  # no token (the link of old)
        b"GET /version HTTP/1.1",  # what the Docker API would answer
        b"GET /wrong-token/vnc.html HTTP/1.1",
        b"GET /" + TOKEN[:-1].encode() + b"/vnc.html HTTP/1.1",  # one character short
        b"GET /" + TOKEN.encode() + b"x/vnc.html HTTP/1.1",
        b"GET /" + TOKEN.encode() + b" HTTP/1.1",  # the token, but nothing under it
        b"GET http://127.0.0.1/" + TOKEN.encode() + b"/vnc.html HTTP/1.1",
        b"GET /" + TOKEN.encode() + b"/vnc.html",  # not a request line
        b"\x16\x03\x01\x02\x00",  # TLS, or any other protocol
        # a bare LF ends a head for http.server: a second request hidden in the first
        b"GET /" + TOKEN.encode() + b"/a HTTP/1.1\r\nX: 1\n\nGET /version HTTP/1.1",
    ],
)
async def test_without_the_token_403_and_no_upstream_connection(
    proxy: LiveViewProxy, upstream: Upstream, request_line: bytes
) -> None:
    answer = await _exchange(proxy, request_line + b"\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert upstream.connections == 0 and proxy.refused == 1


async def test_an_endless_or_slow_head_is_cut_without_upstream(
    proxy: LiveViewProxy, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader, writer = await _connect(proxy)
    writer.write(b"GET /" + TOKEN.encode() + b"/vnc.html HTTP/1.1\r\nX: " + b"a" * 20_000)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    monkeypatch.setattr("orchestrator.desktop._liveview.REQUEST_HEAD_TIMEOUT_S", 0.2)
    reader, writer = await _connect(proxy)
    writer.write(b"GET /" + TOKEN.encode())  # and nothing more
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    assert upstream.connections == 0


async def test_the_token_is_cut_and_one_request_goes_through(
    proxy: LiveViewProxy, upstream: Upstream
) -> None:
    answer = await _exchange(
        proxy,
        f"GET /{TOKEN}/app/ui.js?v=1 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"
        f"GET /version HTTP/1.1\r\nHost: x\r\n\r\n".encode(),  # a second, unchecked request
    )
    assert answer == PAGE  # one response only
    await eventually(lambda: proxy.active_connections == 0)
    assert upstream.received == [
        b"GET /app/ui.js?v=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    ]


async def test_a_websocket_is_spliced_both_ways_after_101(
    proxy: LiveViewProxy, upstream: Upstream
) -> None:
    reader, writer = await _connect(proxy)
    writer.write(ws_request())
    assert await reader.readexactly(len(SWITCH)) == SWITCH
    payload = os.urandom(3 * 1024 * 1024)

    async def send() -> None:
        for i in range(0, len(payload), 100_000):
            writer.write(payload[i : i + 100_000])
            await writer.drain()

    sending = asyncio.create_task(send())
    assert await reader.readexactly(len(payload)) == payload
    await sending
    writer.write_eof()  # a half-close is passed on: the upstream ends, and so does the client
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    assert upstream.received == [
        b"GET /websockify HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Key: k\r\nConnection: Upgrade\r\n\r\n"
    ]


async def test_a_refused_upgrade_lets_nothing_more_through(sockdir: Path) -> None:
    seen: list[bytes] = []

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        seen.append(await reader.read(100))  # keep-alive: would read a next request
        writer.close()

    path = sockdir / "refuse.sock"
    server = await asyncio.start_unix_server(refuse, path=path)
    up = Upstream(path)
    p = LiveViewProxy(up.open, TOKEN)
    await p.start()
    try:
        reader, writer = await _connect(p)
        writer.write(ws_request() + b"GET /version HTTP/1.1\r\n\r\n")
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 400")
        writer.close()
        await eventually(lambda: len(seen) == 2)
        assert seen[1] == b""  # the proxy closed; the second request never came
    finally:
        await p.close()
        server.close()
        await server.wait_closed()


# ---------------------------------------------------------------------- the door itself


async def test_counts_active_connections(proxy: LiveViewProxy) -> None:
    clients = [await _connect(proxy) for _ in range(3)]
    for reader, writer in clients:  # a round trip proves each one is being served
        writer.write(ws_request())
        await reader.readexactly(len(SWITCH))
        writer.write(b"x")
        assert await reader.readexactly(1) == b"x"
    assert proxy.active_connections == 3
    clients[0][1].close()
    await eventually(lambda: proxy.active_connections == 2)
    for _, writer in clients[1:]:
        writer.close()
    await eventually(lambda: proxy.active_connections == 0)


async def test_close_cuts_live_connections_and_stops_listening(upstream: Upstream) -> None:
    p = LiveViewProxy(upstream.open, TOKEN)
    port = await p.start()
    reader, writer = await _connect(p)
    writer.write(ws_request() + b"x")
    assert await reader.readexactly(len(SWITCH) + 1) == SWITCH + b"x"
    await p.close()
    assert p.active_connections == 0
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
    with pytest.raises(RuntimeError):
        await p.start()


async def test_an_upstream_that_cannot_be_opened_closes_the_client(sockdir: Path) -> None:
    p = LiveViewProxy(Upstream(sockdir / "nothing.sock").open, TOKEN)
    await p.start()
    try:
        assert await _exchange(p, ws_request()) == b""
        await eventually(lambda: p.active_connections == 0)
    finally:
        await p.close()


def _listening_addresses(port: int) -> list[str]:
    """Local addresses of the listening TCP sockets on ``port``, from /proc/net."""
    if not os.path.exists("/proc/net/tcp"):
        pytest.skip("needs Linux /proc/net")
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                local, state = line.split()[1], line.split()[3]
                address, hexport = local.split(":")
                if state == "0A" and int(hexport, 16) == port:  # 0A: LISTEN
                    found.append(address)
    return found


async def test_listens_on_loopback_only(proxy: LiveViewProxy) -> None:
    assert _listening_addresses(proxy.port) == ["0100007F"]  # 127.0.0.1, nothing else


async def test_start_is_idempotent_and_ports_and_tokens_differ(upstream: Upstream) -> None:
    a, b = LiveViewProxy(upstream.open), LiveViewProxy(upstream.open)
    try:
        port = await a.start()
        assert await a.start() == port
        assert await b.start() != port
        assert a.token != b.token and len(a.token) >= 32
    finally:
        await a.close()
        await b.close()


def test_url_before_start_fails(upstream: Upstream) -> None:
    with pytest.raises(RuntimeError):
        LiveViewProxy(upstream.open).url("x")


async def test_url_carries_the_token_and_the_password_in_the_fragment(
    proxy: LiveViewProxy,
) -> None:
    url = proxy.url("p&w #1/")
    parts = urlsplit(url)
    assert (parts.scheme, parts.hostname, parts.port) == ("http", "127.0.0.1", proxy.port)
    assert parts.path == f"/{TOKEN}/vnc.html"
    assert parse_qs(parts.query) == {
        "autoconnect": ["1"],
        "resize": ["scale"],
        "path": [f"{TOKEN}/websockify"],  # noVNC: ws://host:port/<token>/websockify
    }
    assert parts.fragment == "password=p%26w%20%231%2F"  # noVNC: decodeURIComponent


async def test_many_connections_at_once(proxy: LiveViewProxy) -> None:
    async def one(i: int) -> bytes:
        reader, writer = await _connect(proxy)
        writer.write(ws_request() + f"client {i}".encode())
        writer.write_eof()
        data = await reader.read()
        writer.close()
        return data

    results: list[bytes] = await asyncio.gather(*(one(i) for i in range(50)))
    assert results == [SWITCH + f"client {i}".encode() for i in range(50)]
    await eventually(lambda: proxy.active_connections == 0)
