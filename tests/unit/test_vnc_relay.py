"""The relay's ends without Ray: the replica's handle with a scripted actor, and the actor's
sessions against a real websockets server on a unix socket (standing in for websockify)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from actors import _vnc_relay
from actors._vnc import VncSessions
from actors._vnc_relay import RayVncRelay
from orchestrator.errors import DesktopError


class _Method:
    def __init__(self, fn: Any) -> None:
        self._fn = fn

    def remote(self, *args: Any) -> Any:
        return self._fn(*args)


class _FakeActor:
    """An actor whose exchange streams small updates forever and records closes/beats."""

    def __init__(self) -> None:
        self.closed: list[str] = []
        self.beats = 0
        self.vnc_exchange = _Method(self._exchange)
        self.vnc_send = _Method(self._send)
        self.vnc_close = _Method(self._close)

    async def _exchange(self, sid: str, up: bytes, wait_s: float) -> bytes:
        await asyncio.sleep(0)
        return b"x" * 1000

    async def _send(self, sid: str, data: bytes) -> None:
        self.beats += not data

    async def _close(self, sid: str) -> None:
        self.closed.append(sid)


def test_a_cancelled_relay_route_closes_the_session() -> None:
    """R2: a route shaped like ``serve_app._relay._relay`` (``finally: shield(close)``)
    closes the actor's session when its task is cancelled, and the heartbeat ends."""
    actor = _FakeActor()

    async def main() -> RayVncRelay:
        relay = RayVncRelay(actor, "vnc-1")

        async def route() -> None:
            try:
                async for _ in relay:
                    pass
            finally:
                await asyncio.shield(relay.close())

        task = asyncio.create_task(route())
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)
        return relay

    relay = asyncio.run(main())
    assert actor.closed == ["vnc-1"]
    assert not relay.beating


def test_the_heartbeat_stops_once_nothing_uses_the_relay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_vnc_relay, "HEARTBEAT_S", 0.01)
    monkeypatch.setattr(_vnc_relay, "IDLE_TIMEOUT_S", 0.05)
    actor = _FakeActor()

    async def main() -> RayVncRelay:
        relay = RayVncRelay(actor, "vnc-2")
        await asyncio.wait_for(asyncio.shield(relay._beat), 5)
        return relay

    relay = asyncio.run(main())
    assert not relay.beating
    assert actor.closed == []  # never closed: only the actor's idle check ends it


def test_downstream_bytes_are_paced(monkeypatch: pytest.MonkeyPatch) -> None:
    """R1: after the burst, the replica takes no more than ``DOWN_RATE`` bytes a second."""
    monkeypatch.setattr(_vnc_relay, "DOWN_RATE", 100_000)
    monkeypatch.setattr(_vnc_relay, "DOWN_BURST", 10_000)
    monkeypatch.setattr(_vnc_relay, "ANSWER_WAIT_S", 0.0)
    actor = _FakeActor()

    async def main() -> tuple[int, float]:
        relay = RayVncRelay(actor, "vnc-3")
        loop = asyncio.get_running_loop()
        start = loop.time()
        got = 0
        async for data in relay:
            got += len(data)
            if loop.time() - start >= 0.5:
                break
        await relay.close()
        return got, loop.time() - start

    got, took = asyncio.run(main())
    assert got <= 10_000 + 100_000 * took + 1000, (got, took)


class _Desktop:
    def __init__(self, path: Path) -> None:
        self.path = path

    def open_novnc(self) -> tuple[socket.socket, str]:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(self.path))
        return sock, "password"


async def _serve(path: Path, first: bytes) -> Any:
    from websockets.asyncio.server import unix_serve

    async def handler(ws: Any) -> None:
        await ws.send(first)
        await ws.wait_closed()

    return await unix_serve(handler, str(path), subprotocols=["binary"], max_size=None)


def test_a_bad_greeting_or_an_oversized_message_is_a_desktop_error(tmp_path: Path) -> None:
    """R3, R4: a non-3.8 greeting and a 16 MiB message both end ``open`` with DesktopError,
    leaving no transport behind; a good server afterwards is not disturbed."""

    async def main() -> None:
        sessions = VncSessions()
        for name, first in (("old", b"RFB 003.003\n"), ("big", b"R" * (16 << 20))):
            path = tmp_path / f"{name}.sock"
            server = await _serve(path, first)
            try:
                with pytest.raises(DesktopError):
                    await sessions.open(_Desktop(path), "view", "h")  # type: ignore[arg-type]
            finally:
                server.close()
                await server.wait_closed()
        with pytest.raises(DesktopError):
            await sessions.open(_Desktop(tmp_path / "none.sock"), "view", "h")  # type: ignore[arg-type]
        assert sessions.counters.open == 0
        await sessions.close_all()
        assert sessions._watch is None

    asyncio.run(main())


def test_the_server_init_comes_first_and_the_first_call_does_not_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The replica answered the viewer's handshake: its ``ServerInit`` is yielded first,
    without a call; the first ``exchange`` then waits ``ANSWER_WAIT_S`` at most for the
    viewer's first requests (they ride along). Without a ``ServerInit`` nothing was sent
    to answer, so the first call goes at once."""
    monkeypatch.setattr(_vnc_relay, "ANSWER_WAIT_S", 5.0)
    actor = _FakeActor()
    ups: list[bytes] = []

    async def exchange(sid: str, up: bytes, wait_s: float) -> bytes:
        ups.append(up)
        return b"x" * 1000

    actor.vnc_exchange = _Method(exchange)

    async def main() -> tuple[bytes, bytes, float]:
        relay = RayVncRelay(actor, "vnc-4", b"SERVERINIT")
        items = relay.__aiter__()
        first = await items.__anext__()
        await relay.send(b"\x03requests")  # the viewer's answer: the call goes with it
        loop = asyncio.get_running_loop()
        start = loop.time()
        second = await items.__anext__()
        took = loop.time() - start
        bare = RayVncRelay(actor, "vnc-5")
        start = loop.time()
        await bare.__aiter__().__anext__()
        took = max(took, loop.time() - start)
        await relay.close()
        await bare.close()
        return first, second, took

    first, second, took = asyncio.run(main())
    assert first == b"SERVERINIT" and second == b"x" * 1000
    assert ups[0] == b"\x03requests" and ups[1] == b""
    assert took < 2.0  # neither call waited ANSWER_WAIT_S (5 s here)
