"""``LiveViewProxy``: a loopback-only TCP door to a desktop's noVNC unix socket.

The container serves noVNC (the web page and the websocket, through websockify) on a unix
socket in its bind-mounted run directory; a browser needs TCP, so this proxy listens on
127.0.0.1, on a free port, and copies bytes both ways, one upstream connection per client
connection. It never listens on any other interface: anything beyond this machine must go
through the authenticated API, not to this port.

Example:
    >>> proxy = LiveViewProxy(Path("/run/orchestrator/desktops/ab12/run/novnc.sock"))
    >>> port = await proxy.start()  # doctest: +SKIP
    >>> proxy.url("pw")  # doctest: +SKIP
    'http://127.0.0.1:41234/vnc.html?autoconnect=1&resize=scale&path=websockify#password=pw'
    >>> await proxy.close()  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from urllib.parse import quote, urlencode

__all__ = ["LOOPBACK", "LiveViewProxy"]

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
"""The only address the proxy listens on."""

_CHUNK = 64 * 1024
_UPSTREAM_CONNECT_TIMEOUT_S = 5.0


class LiveViewProxy:
    """Forwards TCP connections on 127.0.0.1 to a unix socket, byte for byte.

    Example:
        >>> proxy = LiveViewProxy(Path("/tmp/novnc.sock"))
        >>> port = await proxy.start()  # doctest: +SKIP
        >>> proxy.active_connections  # doctest: +SKIP
        0
    """

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = Path(socket_path)
        """The unix socket connections are forwarded to."""
        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def port(self) -> int:
        """The TCP port on 127.0.0.1 (after ``start``)."""
        if self._port is None:
            raise RuntimeError("the live view proxy is not started")
        return self._port

    @property
    def active_connections(self) -> int:
        """Client connections being served right now."""
        return len(self._connections)

    async def start(self) -> int:
        """Listen on 127.0.0.1 on a free port and return it (idempotent)."""
        if self._closed:
            raise RuntimeError("the live view proxy is closed")
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, host=LOOPBACK, port=0)
            self._port = int(self._server.sockets[0].getsockname()[1])
            log.debug("live view proxy 127.0.0.1:%d -> %s", self._port, self.socket_path)
        return self.port

    def url(self, password: str) -> str:
        """The noVNC link: it connects at once, scales the screen and carries the password.

        noVNC reads ``password`` from the URL fragment first (then the query); the fragment
        is never sent in an HTTP request, so it stays out of server logs and Referer headers.
        It does stay in the browser's history: anyone holding the link can watch and control
        the desktop, so hand it only to whoever may.
        """
        query = urlencode({"autoconnect": "1", "resize": "scale", "path": "websockify"})
        fragment = "password=" + quote(password, safe="")
        return f"http://{LOOPBACK}:{self.port}/vnc.html?{query}#{fragment}"

    async def close(self) -> None:
        """Stop listening and cut every live connection."""
        self._closed = True
        server, self._server = self._server, None
        if server is not None:
            server.close()
        connections = list(self._connections)
        for task in connections:
            task.cancel()
        await asyncio.gather(*connections, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._forward(reader, writer)
        except asyncio.CancelledError:
            pass  # close() cut this connection (asyncio would report a cancelled handler)
        finally:
            writer.close()
            self._connections.discard(task)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_UPSTREAM_CONNECT_TIMEOUT_S):
                up_reader, up_writer = await asyncio.open_unix_connection(self.socket_path)
        except OSError as e:  # TimeoutError included
            log.warning("live view: cannot reach %s: %s", self.socket_path, e)
            return
        try:
            await _splice(reader, writer, up_reader, up_writer)
        finally:
            up_writer.close()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then pass the EOF on (a half-close); errors end the connection."""
    while data := await reader.read(_CHUNK):
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof() and not writer.is_closing():
        writer.write_eof()


async def _splice(
    a_reader: asyncio.StreamReader,
    a_writer: asyncio.StreamWriter,
    b_reader: asyncio.StreamReader,
    b_writer: asyncio.StreamWriter,
) -> None:
    """Copy both ways until both sides have finished, or either fails."""
    pumps = {
        asyncio.create_task(_pump(a_reader, b_writer)),
        asyncio.create_task(_pump(b_reader, a_writer)),
    }
    try:
        done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if (error := task.exception()) is not None and not isinstance(error, OSError):
                raise error
    finally:
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
