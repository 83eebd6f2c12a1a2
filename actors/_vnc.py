"""The live desktop relay's sessions in the agent's actor (the replica's handle,
``orchestrator.front.VncRelay``, is ``actors._vnc_relay``).

In the actor (``VncSessions``), a session is one viewer of the agent's desktop: a WebSocket
to the desktop's noVNC server (websockify, over the desktop's checked unix socket: no IP),
the RFB handshake with x11vnc done with the desktop's password (``_rfb.upstream_handshake``),
and the viewer's messages (``_rfb.ViewerFilter``: every client message parsed and input
dropped unless the session may steer; a watcher asks for a whole frame at most every
``FULL_EVERY_S``). The viewer's own handshake (security None, up to its ``ClientInit``) is
answered by the replica while the session opens (``_rfb.ViewerHandshake``): ``open`` returns
the desktop's ``ServerInit`` for it to send. Server bytes are not parsed: a reader task
appends what websockify sends (messages of at most ``MAX_MESSAGE_BYTES``) to a buffer of at most
``DOWN_BUFFER_BYTES``; when it is full the reader stops reading and x11vnc's socket fills.
The replica pulls with ``exchange`` calls (each carries the viewer's bytes up and everything
buffered down, up to ``CHUNK_BYTES``) no faster than ``DOWN_RATE`` allows: Serve's WebSocket
queue toward the browser is unbounded, so this rate, not the browser, bounds what a viewer
that never reads can pile up in the replica. Viewer bytes sent while an exchange waits go
in batched ``vnc_send`` calls.

A session ends when the viewer goes (the replica's ``close``), when the desktop's socket
closes, when the agent shuts down or its desktop is reset (``close_all``), or when nothing
was heard from its replica for ``IDLE_TIMEOUT_S`` (the replica beats every
``HEARTBEAT_S``: a replica that died leaves no session behind).

The replica's end is ``actors._vnc_relay.RayVncRelay``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic import BaseModel

from orchestrator.desktop import ViewerFilter, upstream_handshake
from orchestrator.domain import new_id
from orchestrator.errors import AgentError, DesktopError
from orchestrator.front import ViewMode

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

    from orchestrator.desktop import Desktop

__all__ = [
    "CHUNK_BYTES",
    "DOWN_BUFFER_BYTES",
    "RelayCounters",
    "RelayMode",
    "RelayOpened",
    "RelayPart",
    "VncSessions",
]

log = logging.getLogger(__name__)

RelayMode = ViewMode
"""What a relay session may do (``orchestrator.front.ViewMode``)."""

CHUNK_BYTES = 256 * 1024
"""The most bytes one streamed item carries."""
DOWN_BUFFER_BYTES = 1024 * 1024
"""The most server bytes a session holds for a slow viewer before it stops reading."""
UP_BUFFER_BYTES = 1024 * 1024
"""The most viewer bytes the replica holds while a call is on its way before ``send`` waits."""
OPEN_TIMEOUT_S = 10.0
"""How long opening the desktop's noVNC WebSocket and the RFB handshake may take."""
MAX_POLL_S = 10.0
"""The longest one ``exchange`` call waits for the desktop's bytes."""
POLL_S = 5.0
"""How long the replica's ``exchange`` calls wait for the desktop's bytes."""
ANSWER_WAIT_S = 0.05
"""After bytes went to the viewer, how long the replica waits for its answer (noVNC asks
for the next update at once) to carry it in the next ``exchange`` rather than a call of its
own: x11vnc sends nothing new before that answer anyway."""
PACE_S = 0.125
"""The shortest time between two deliveries to a viewer that is only watching (at most 8
updates a second: a wall of live desktops costs the API little); one that steered within
``STEER_FRESH_S``, a session younger than ``YOUNG_S`` and a delivery with more bytes behind
it are not paced."""
STEER_FRESH_S = 2.0
YOUNG_S = 3.0
LINGER_S = 0.002
"""Once bytes are there, ``pull`` waits while more keep coming this quickly (the rest of
an update websockify sends in several messages), so one delivery carries it whole."""
HEARTBEAT_S = 10.0
"""How often the replica says it is still there."""
IDLE_TIMEOUT_S = 35.0
"""A session its replica has not called for this long is closed."""
MAX_MESSAGE_BYTES = 256 * 1024
"""The largest WebSocket message taken from the desktop (websockify sends <= 64 KiB)."""
FULL_EVERY_S = 2.0
"""A session that may not steer gets at most one whole frame on request per this long."""
DOWN_RATE = 8 * 1024 * 1024
"""Bytes per second one relay carries to its viewer at most (after ``DOWN_BURST``)."""
DOWN_BURST = 16 * 1024 * 1024


class RelayCounters(BaseModel):
    """What an agent's relay sessions carried (since the actor started)."""

    opened: int = 0
    """Sessions opened."""
    open: int = 0
    """Sessions open now."""
    bytes_to_viewer: int = 0
    """Bytes streamed to viewers (the desktop's messages after its ``ServerInit``)."""
    chunks_to_viewer: int = 0
    """Streamed items those bytes went in (each a Ray object: fewer is cheaper)."""
    desktop_messages: int = 0
    """WebSocket messages the desktop's websockify sent (what the chunks coalesce)."""
    bytes_from_viewer: int = 0
    """Bytes viewers sent."""
    calls_from_viewer: int = 0
    """Batches of viewer bytes the replicas sent (each an actor call)."""
    passed: int = 0
    """Viewer messages passed on to the desktop's VNC server."""
    dropped: int = 0
    """Viewer input messages dropped (the session could not steer)."""


class RelayOpened(BaseModel):
    """A relay session just opened: its id, and the desktop's ``ServerInit`` that the
    viewer is owed once its ``ClientInit`` came."""

    sid: str
    server_init: bytes


class _Session:
    """One viewer's connection to the desktop's VNC server (in the actor); the viewer's
    handshake is over (the replica answered it), its messages go through ``viewer``."""

    def __init__(
        self,
        sid: str,
        ws: ClientConnection,
        viewer: ViewerFilter,
        counters: RelayCounters,
        early: bytes = b"",
    ) -> None:
        self.sid = sid
        self.ws = ws
        self.viewer = viewer
        self.counters = counters
        self.seen = time.monotonic()
        self.opened_at = self.seen
        self.steered_at = -1e9
        self.delivered_at = -1e9
        self._down = bytearray(early)  # server bytes that came with its ServerInit
        self._changed = asyncio.Event()  # bytes came, or room was made, or the session ended
        self._changed.set()
        self._closed = False
        self._reader: asyncio.Task[None] | None = asyncio.create_task(
            self._read(), name=f"vnc-{sid}"
        )

    @property
    def closed(self) -> bool:
        return self._closed

    def pace_s(self) -> float:
        """How long the next delivery should wait (0: now): see ``PACE_S``."""
        now = time.monotonic()
        if self._down or now - self.opened_at < YOUNG_S or now - self.steered_at < STEER_FRESH_S:
            return 0.0
        return max(0.0, self.delivered_at + PACE_S - now)

    def take(self, limit: int) -> bytes:
        """What is buffered, up to ``limit`` bytes, without waiting."""
        data = bytes(self._down[:limit])
        del self._down[: len(data)]
        self._changed.set()
        self.counters.bytes_to_viewer += len(data)
        return data

    async def pull(self, wait_s: float | None = None) -> bytes | None:
        """What the viewer gets next (up to ``CHUNK_BYTES``): b"" when nothing came within
        ``wait_s``, None once the session ended."""
        while not self._down:
            if self._closed:
                return None
            self._changed.clear()
            try:
                async with asyncio.timeout(wait_s):
                    await self._changed.wait()
            except TimeoutError:
                return b""
        while len(self._down) < CHUNK_BYTES and not self._closed:  # the rest of an update
            self._changed.clear()
            try:
                async with asyncio.timeout(LINGER_S):
                    await self._changed.wait()
            except TimeoutError:
                break
        data = bytes(self._down[:CHUNK_BYTES])
        del self._down[:CHUNK_BYTES]
        self._changed.set()  # room for the reader
        self.counters.bytes_to_viewer += len(data)
        self.counters.chunks_to_viewer += 1
        return data

    async def push(self, data: bytes) -> None:
        """The viewer's bytes: the messages it may send go on to the desktop."""
        self.seen = time.monotonic()
        if not data or self._closed:
            return
        self.counters.bytes_from_viewer += len(data)
        self.counters.calls_from_viewer += 1
        before_passed, before_dropped = self.viewer.passed, self.viewer.dropped
        before_steered = self.viewer.steered
        try:
            to_server = self.viewer.feed(data)
        except DesktopError as e:
            log.info("relay %s: %s; closing", self.sid, e)
            await self.close()
            return
        self.counters.passed += self.viewer.passed - before_passed
        self.counters.dropped += self.viewer.dropped - before_dropped
        if self.viewer.steered > before_steered:
            self.steered_at = time.monotonic()
        if to_server:
            try:
                await self.ws.send(to_server)
            except Exception as e:  # noqa: BLE001 - the desktop's side went: end the session
                log.info("relay %s: the desktop's VNC connection ended: %s", self.sid, e)
                await self.close()

    async def _read(self) -> None:
        """Append what the desktop's VNC server sends, while the buffer has room."""
        try:
            async for message in self.ws:
                if isinstance(message, str):
                    message = message.encode()
                self._down += message
                self.counters.desktop_messages += 1
                self._changed.set()
                while len(self._down) >= DOWN_BUFFER_BYTES and not self._closed:
                    self._changed.clear()
                    await self._changed.wait()
        except Exception as e:  # noqa: BLE001 - any end of the desktop's side ends the session
            log.info("relay %s: the desktop's VNC connection ended: %s", self.sid, e)
        finally:
            self._closed = True
            self._changed.set()

    async def close(self) -> None:
        """End the session (idempotent)."""
        self._closed = True
        self._changed.set()
        reader, self._reader = self._reader, None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), timeout=2.0)


class VncSessions:
    """An agent's relay sessions (one per viewer), in its actor.

    ``may_input(holder)``: whether the holder may steer the desktop now (the agent's lease);
    until something is wired here nobody may.
    """

    def __init__(self, may_input: Callable[[str], bool] | None = None) -> None:
        self.may_input: Callable[[str], bool] = may_input or (lambda _holder: False)
        self.counters = RelayCounters()
        self._sessions: dict[str, _Session] = {}
        self._watch: asyncio.Task[None] | None = None

    async def open(self, desktop: Desktop, mode: RelayMode, holder: str) -> RelayOpened:
        """Connect to the desktop's VNC server for a new viewer whose handshake the caller
        answers; returns the session's id and the desktop's ``ServerInit``."""
        from websockets.asyncio.client import connect

        ws: ClientConnection | None = None
        try:
            sock, password = await asyncio.to_thread(desktop.open_novnc)
        except (OSError, ValueError) as e:
            raise DesktopError(f"the desktop's VNC server: {e}") from e
        try:
            async with asyncio.timeout(OPEN_TIMEOUT_S):
                ws = await connect(
                    "ws://desktop/websockify",
                    sock=sock,
                    subprotocols=["binary"],  # type: ignore[list-item]
                    compression=None,
                    proxy=None,
                    ping_interval=None,
                    max_size=MAX_MESSAGE_BYTES,
                    max_queue=4,
                    open_timeout=OPEN_TIMEOUT_S,
                )
                reader = _MessageReader(ws)
                server_init = await upstream_handshake(reader.read, ws.send, password)
        except BaseException as e:
            if ws is not None:
                ws.transport.abort()  # closes the socket with its transport
            else:
                sock.close()
            if isinstance(e, DesktopError) or not isinstance(e, Exception):
                raise
            raise DesktopError(f"the desktop's VNC server: {e!r}") from e

        def may_steer() -> bool:
            return mode == "control" and self.may_input(holder)

        sid = new_id("vnc")
        viewer = ViewerFilter(may_steer, None if mode == "control" else FULL_EVERY_S)
        self._sessions[sid] = _Session(sid, ws, viewer, self.counters, reader.rest())
        self.counters.opened += 1
        self.counters.open = len(self._sessions)
        if self._watch is None:
            self._watch = asyncio.create_task(self._close_idle())
        log.info("relay %s opened (%s)", sid, mode)
        return RelayOpened(sid=sid, server_init=server_init)

    def _get(self, sid: str) -> _Session:
        session = self._sessions.get(sid)
        if session is None:
            raise AgentError(f"no relay session {sid}")
        return session

    async def exchange(self, sid: str, data: bytes, wait_s: float) -> bytes | None:
        """Take the viewer's bytes (if any), then return what it gets next: b"" when
        nothing came within ``wait_s``, None once the session ended (and it is closed)."""
        session = self._sessions.get(sid)
        if session is None:
            return None
        if data:
            await session.push(data)
        session.seen = time.monotonic()
        down = await session.pull(min(wait_s, MAX_POLL_S))
        if down is None:
            await self.close(sid)
            return None
        if down and (pace := session.pace_s()) > 0:
            await asyncio.sleep(pace)  # a pace: the interval is the point; more may collect
            down += session.take(CHUNK_BYTES - len(down))
        if down:
            session.delivered_at = time.monotonic()
        return down

    async def send(self, sid: str, data: bytes) -> None:
        """Bytes from the viewer (b"": only a heartbeat)."""
        session = self._sessions.get(sid)
        if session is None or session.closed:
            raise AgentError(f"relay session {sid} has ended")
        await session.push(data)

    async def close(self, sid: str) -> None:
        """End one session (idempotent)."""
        session = self._sessions.pop(sid, None)
        self.counters.open = len(self._sessions)
        if session is not None:
            await session.close()
            log.info("relay %s closed", sid)

    async def close_all(self) -> None:
        """End every session (the agent shuts down, or its desktop is replaced)."""
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
        await asyncio.gather(*(self.close(sid) for sid in list(self._sessions)))

    async def _close_idle(self) -> None:
        """Close sessions whose replica has gone quiet (a heartbeat: the interval is the
        point)."""
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            now = time.monotonic()
            for sid, session in list(self._sessions.items()):
                if now - session.seen > IDLE_TIMEOUT_S:
                    log.warning("relay %s: no word from its replica; closing", sid)
                    try:
                        await self.close(sid)
                    except Exception:
                        log.exception("relay %s: closing it failed", sid)


class _MessageReader:
    """``read(n)``: exactly n bytes from a WebSocket's binary messages (for the handshake)."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._buf = bytearray()

    def rest(self) -> bytes:
        """What came after the bytes read (the server's first messages, if any)."""
        rest = bytes(self._buf)
        self._buf.clear()
        return rest

    async def read(self, n: int) -> bytes:
        while len(self._buf) < n:
            message = await self._ws.recv()
            self._buf += message.encode() if isinstance(message, str) else message
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data


class RelayPart:
    """The relay's methods of the agent actor (``AgentActor`` mixes this in)."""

    desktop: Desktop | None
    relay: VncSessions

    async def vnc_open(self, mode: RelayMode, holder: str) -> RelayOpened:
        """Open a relay session to this agent's desktop for a viewer (its handshake answered
        by the caller); returns the session's id and the desktop's ``ServerInit``."""
        if self.desktop is None:
            raise AgentError("the agent has no desktop to relay")
        return await self.relay.open(self.desktop, mode, holder)

    async def vnc_exchange(self, sid: str, data: bytes, wait_s: float) -> bytes | None:
        """The viewer's bytes in; what it gets next out (b"": nothing within ``wait_s``;
        None: the session ended)."""
        return await self.relay.exchange(sid, data, wait_s)

    async def vnc_send(self, sid: str, data: bytes) -> None:
        """The viewer's bytes (a batch; b"": a heartbeat)."""
        await self.relay.send(sid, data)

    async def vnc_close(self, sid: str) -> None:
        """End a relay session (idempotent)."""
        await self.relay.close(sid)

    async def vnc_counters(self) -> RelayCounters:
        """What this agent's relay sessions carried."""
        return self.relay.counters.model_copy()
