"""LiveViewProxy against a throwaway unix-socket echo server (no desktop, no browser)."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from orchestrator.desktop._liveview import LiveViewProxy


async def eventually(probe: Callable[[], object], *, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not probe():
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.01)


@pytest.fixture
def sockdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="lv-"))  # short: unix socket paths max 107 bytes
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Echo until the client's EOF, then close (answers a half-close like a server would)."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@pytest.fixture
async def upstream(sockdir: Path) -> AsyncIterator[Path]:
    path = sockdir / "novnc.sock"
    server = await asyncio.start_unix_server(_echo, path=path)
    try:
        yield path
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def proxy(upstream: Path) -> AsyncIterator[LiveViewProxy]:
    p = LiveViewProxy(upstream)
    await p.start()
    try:
        yield p
    finally:
        await p.close()


async def _connect(proxy: LiveViewProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", proxy.port)


async def test_forwards_bytes_both_ways(proxy: LiveViewProxy) -> None:
    reader, writer = await _connect(proxy)
    writer.write(b"GET /vnc.html HTTP/1.1\r\n\r\n")
    assert await reader.readexactly(26) == b"GET /vnc.html HTTP/1.1\r\n\r\n"
    payload = os.urandom(3 * 1024 * 1024)

    async def send() -> None:
        for i in range(0, len(payload), 100_000):
            writer.write(payload[i : i + 100_000])
            await writer.drain()

    sending = asyncio.create_task(send())
    assert await reader.readexactly(len(payload)) == payload
    await sending
    writer.close()


async def test_half_close_is_passed_on(proxy: LiveViewProxy) -> None:
    reader, writer = await _connect(proxy)
    writer.write(b"last words")
    writer.write_eof()
    assert await reader.read() == b"last words"  # echoed, then EOF from the upstream
    writer.close()


async def test_counts_active_connections(proxy: LiveViewProxy) -> None:
    clients = [await _connect(proxy) for _ in range(3)]
    for reader, writer in clients:  # a round trip proves each one is being served
        writer.write(b"x")
        assert await reader.readexactly(1) == b"x"
    assert proxy.active_connections == 3
    clients[0][1].close()
    await eventually(lambda: proxy.active_connections == 2)
    for _, writer in clients[1:]:
        writer.close()
    await eventually(lambda: proxy.active_connections == 0)


async def test_close_cuts_live_connections_and_stops_listening(upstream: Path) -> None:
    p = LiveViewProxy(upstream)
    port = await p.start()
    reader, writer = await _connect(p)
    writer.write(b"x")
    assert await reader.readexactly(1) == b"x"
    await p.close()
    assert p.active_connections == 0
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
    with pytest.raises(RuntimeError):
        await p.start()


async def test_unreachable_upstream_closes_the_client(sockdir: Path) -> None:
    p = LiveViewProxy(sockdir / "nothing.sock")
    await p.start()
    try:
        reader, writer = await _connect(p)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        await eventually(lambda: p.active_connections == 0)
    finally:
        await p.close()


async def test_upstream_closing_first_reaches_the_client(sockdir: Path) -> None:
    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.0 200 OK\r\n\r\nbye")
        await writer.drain()
        writer.close()

    path = sockdir / "greet.sock"
    server = await asyncio.start_unix_server(greet, path=path)
    p = LiveViewProxy(path)
    await p.start()
    try:
        reader, writer = await _connect(p)
        assert await asyncio.wait_for(reader.read(), 5) == b"HTTP/1.0 200 OK\r\n\r\nbye"
        writer.close()
        await eventually(lambda: p.active_connections == 0)
    finally:
        await p.close()
        server.close()
        await server.wait_closed()


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


async def test_start_is_idempotent_and_ports_are_free(upstream: Path) -> None:
    a, b = LiveViewProxy(upstream), LiveViewProxy(upstream)
    try:
        port = await a.start()
        assert await a.start() == port
        assert await b.start() != port
    finally:
        await a.close()
        await b.close()


def test_url_before_start_fails(upstream: Path) -> None:
    with pytest.raises(RuntimeError):
        LiveViewProxy(upstream).url("x")


async def test_url_carries_the_password_in_the_fragment(proxy: LiveViewProxy) -> None:
    url = proxy.url("p&w #1/")
    parts = urlsplit(url)
    assert (parts.scheme, parts.hostname, parts.port) == ("http", "127.0.0.1", proxy.port)
    assert parts.path == "/vnc.html"
    assert parse_qs(parts.query) == {
        "autoconnect": ["1"],
        "resize": ["scale"],
        "path": ["websockify"],
    }
    assert parts.fragment == "password=p%26w%20%231%2F"  # noVNC: decodeURIComponent


async def test_many_connections_at_once(proxy: LiveViewProxy) -> None:
    async def one(i: int) -> bytes:
        reader, writer = await _connect(proxy)
        writer.write(f"client {i}".encode())
        writer.write_eof()
        data = await reader.read()
        writer.close()
        return data

    results: list[bytes] = await asyncio.gather(*(one(i) for i in range(50)))
    assert results == [f"client {i}".encode() for i in range(50)]
    await eventually(lambda: proxy.active_connections == 0)
