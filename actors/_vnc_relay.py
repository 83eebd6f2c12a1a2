"""The replica's end of a live desktop relay session (``orchestrator.front.VncRelay``); the
actor's end is ``actors._vnc``.

Example (in the replica):
    >>> relay = await ref.vnc_relay("view", "session:abc")  # doctest: +SKIP
    >>> async for data in relay: ...  # the ServerInit first  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from ._vnc import (
    ANSWER_WAIT_S,
    CHUNK_BYTES,
    DOWN_BURST,
    DOWN_RATE,
    HEARTBEAT_S,
    IDLE_TIMEOUT_S,
    POLL_S,
    UP_BUFFER_BYTES,
)

__all__ = ["RayVncRelay"]


class RayVncRelay:
    """The replica's end of a relay session: iterate for the desktop's bytes (its
    ``ServerInit`` first: the viewer's handshake is over), ``send`` the viewer's, ``close``
    when the viewer goes.

    One ``exchange`` call per round trip of the protocol: it carries what the viewer said
    (typically its request for the next update) and comes back with what the desktop sent
    next, or empty after ``POLL_S``. Bytes the viewer sends while such a call waits (a key
    press on a quiet desktop) go at once in batched ``vnc_send`` calls, in order. Downstream
    bytes are paced to ``DOWN_RATE`` after a ``DOWN_BURST`` (Serve queues what goes to the
    browser without bound). The heartbeat keeps the actor's session only while the relay is
    used: once nothing iterated or sent for ``IDLE_TIMEOUT_S`` (a cancelled request), it
    stops and the actor closes the session.
    """

    def __init__(self, handle: Any, sid: str, server_init: bytes = b"") -> None:
        self._handle = handle
        self._sid = sid
        self._first = server_init
        self._pending = bytearray()
        self._room = asyncio.Event()
        self._room.set()
        self._came = asyncio.Event()  # the viewer sent something while no call waits
        self._polling = False
        self._flusher: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._closed = False
        self.used_at = time.monotonic()
        self._credit = float(DOWN_BURST)
        self._credit_at = self.used_at
        self._beat = asyncio.create_task(self._heartbeat())

    @property
    def beating(self) -> bool:
        """Whether the heartbeat still keeps the actor's session."""
        return not self._beat.done()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _pace(self, sent: int) -> None:
        """Spend ``sent`` bytes of credit; wait while it is below zero (a rate: the wait is
        the point)."""
        now = time.monotonic()
        self._credit = min(DOWN_BURST, self._credit + (now - self._credit_at) * DOWN_RATE) - sent
        self._credit_at = now
        if self._credit < 0:
            await asyncio.sleep(-self._credit / DOWN_RATE)

    async def _iterate(self) -> AsyncIterator[bytes]:
        from ._agent_ref import ray_call

        answered = False  # nothing was sent yet: nothing to wait for an answer to
        if self._first:
            first, self._first = self._first, b""
            yield first
            await self._pace(len(first))
            answered = True  # the viewer answers its ServerInit with its first requests
        while not self._closed:
            self.used_at = time.monotonic()
            if self._flusher is not None:
                await asyncio.gather(self._flusher, return_exceptions=True)  # order
            if self._error is not None:
                raise self._error
            if answered and not self._pending:
                self._came.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(ANSWER_WAIT_S):
                        await self._came.wait()
            up = bytes(self._pending)
            self._pending.clear()
            self._room.set()
            self._polling = True
            try:
                down = await ray_call(self._handle.vnc_exchange.remote(self._sid, up, POLL_S))
            finally:
                self._polling = False
            if down is None:
                return
            answered = 0 < len(down) < CHUNK_BYTES  # a full chunk: more is on its way
            if down:
                yield down
                await self._pace(len(down))

    async def send(self, data: bytes) -> None:
        """Queue the viewer's bytes for the next call. Waits while ``UP_BUFFER_BYTES`` are
        queued; raises what ended the session."""
        self.used_at = time.monotonic()
        if self._error is not None:
            raise self._error
        while len(self._pending) >= UP_BUFFER_BYTES:
            self._room.clear()
            await self._room.wait()
            if self._error is not None:
                raise self._error
        self._pending += data
        if not self._polling:
            self._came.set()
        elif self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        from ._agent_ref import ray_call

        try:
            while self._pending and self._polling and not self._closed:
                batch = bytes(self._pending)
                self._pending.clear()
                self._room.set()
                await ray_call(self._handle.vnc_send.remote(self._sid, batch))
        except Exception as e:  # noqa: BLE001 - kept for the next send
            self._error = e
            self._room.set()

    async def _heartbeat(self) -> None:
        from ._agent_ref import ray_call

        while not self._closed:
            await asyncio.sleep(HEARTBEAT_S)  # a heartbeat: the interval is the point
            if time.monotonic() - self.used_at > IDLE_TIMEOUT_S:
                return  # nobody uses the relay: let the actor's idle check close it
            try:
                await ray_call(self._handle.vnc_send.remote(self._sid, b""))
            except Exception as e:  # noqa: BLE001 - the session is over
                self._error = e
                return

    async def close(self) -> None:
        """End the session in the actor (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._beat.cancel()
        if self._flusher is not None:
            self._flusher.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._handle.vnc_close.remote(self._sid), timeout=5.0)
