"""``LiveViewProxy``: a loopback-only, token-checked door to a desktop's noVNC socket.

The container serves noVNC (the web page and the websocket, through websockify) on a unix
socket in its bind-mounted run directory; a browser needs TCP, so this proxy listens on
127.0.0.1, on a free port. Anyone on the node can reach that port, so it serves only
requests whose path starts with the desktop's own random token
(``/<token>/vnc.html``, compared in constant time): anything else gets a 403 and the
proxy never connects upstream. The token is cut from the path before the request goes on.

Exactly one request per client connection is let through: an HTTP request goes upstream
with ``Connection: close`` and nothing more the client sends follows it (so a second,
unchecked request on a kept-alive connection never reaches websockify); a websocket
upgrade is spliced both ways only once the upstream answered ``101``. The upstream socket
comes from ``open_upstream`` (the desktop passes ``_hostfs.connect_socket``: no links, the
listener checked to be the desktop's own). It never listens on any other interface.

Example:
    >>> proxy = LiveViewProxy(lambda: connect_socket(novnc_sock, container_id))
    >>> port = await proxy.start()  # doctest: +SKIP
    >>> proxy.url("pw")  # doctest: +SKIP
    'http://127.0.0.1:41234/<token>/vnc.html?autoconnect=1&resize=scale&path=<token>%2Fwebsockify#password=pw'
    >>> await proxy.close()  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, urlencode

__all__ = ["LIVE_VIEW_OFF", "LOOPBACK", "LiveView", "LiveViewProxy"]

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
"""The only address the proxy listens on."""

LIVE_VIEW_OFF = (
    "the loopback live view is off on this node (ORCHESTRATOR_LIVE_VIEW_PROXY=off): "
    "watch the desktop through the API's relay, /v1/agents/<id>/vnc"
)
"""What ``live_view`` answers when the node serves no loopback noVNC link."""

MAX_REQUEST_HEAD_BYTES = 16 * 1024
"""The longest request (or upstream response) head the proxy reads."""
REQUEST_HEAD_TIMEOUT_S = 10.0
"""How long a client has to send its request head."""

_CHUNK = 64 * 1024
_UPSTREAM_CONNECT_TIMEOUT_S = 5.0
_END = b"\r\n\r\n"
_HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection"}
_FORBIDDEN = (
    b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n"
    b"Connection: close\r\n\r\nforbidden\n"
)

UpstreamOpener = Callable[[], socket.socket]
"""Opens a connected socket to the noVNC server (blocking; run on a thread)."""


@dataclass(frozen=True)
class LiveView:
    """Where a person can watch (and steer) the desktop in a browser: loopback only."""

    url: str
    """The noVNC page, with the desktop's VNC password in it: treat it as a secret."""
    password: str
    """The desktop's random VNC password."""


class LiveViewProxy:
    """Forwards token-checked requests on 127.0.0.1 to the desktop's noVNC socket.

    Example:
        >>> proxy = LiveViewProxy(open_upstream)
        >>> port = await proxy.start()  # doctest: +SKIP
        >>> proxy.active_connections  # doctest: +SKIP
        0
    """

    def __init__(self, open_upstream: UpstreamOpener, token: str | None = None) -> None:
        self._open_upstream = open_upstream
        self.token = token or secrets.token_urlsafe(24)
        """The secret first path segment every request must carry."""
        self._token = self.token.encode()
        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._closed = False
        self.refused = 0
        """Requests answered 403 (without any upstream connection)."""

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
            self._server = await asyncio.start_server(
                self._serve, host=LOOPBACK, port=0, limit=MAX_REQUEST_HEAD_BYTES
            )
            self._port = int(self._server.sockets[0].getsockname()[1])
            log.debug("live view proxy on 127.0.0.1:%d", self._port)
        return self.port

    def url(self, password: str) -> str:
        """The noVNC link: it connects at once, scales the screen and carries the password
        and the token (every page, script and the websocket live under ``/<token>/``).

        noVNC reads ``password`` from the URL fragment first (then the query); the fragment
        is never sent in an HTTP request, so it stays out of server logs and Referer headers.
        The link stays in the browser's history: anyone holding it can watch and control
        the desktop, so hand it only to whoever may.
        """
        query = urlencode(
            {"autoconnect": "1", "resize": "scale", "path": f"{self.token}/websockify"}
        )
        fragment = "password=" + quote(password, safe="")
        return f"http://{LOOPBACK}:{self.port}/{self.token}/vnc.html?{query}#{fragment}"

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
        except OSError:
            pass  # the client went away
        finally:
            writer.close()
            self._connections.discard(task)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_HEAD_TIMEOUT_S):
                head = await reader.readuntil(_END)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            return
        request = _authorize(head, self._token)
        if request is None:
            self.refused += 1
            writer.write(_FORBIDDEN)
            await writer.drain()
            return
        rewritten, method, upgrade = request
        try:
            async with asyncio.timeout(_UPSTREAM_CONNECT_TIMEOUT_S):
                sock = await asyncio.to_thread(self._open_upstream)
                up_reader, up_writer = await asyncio.open_unix_connection(
                    sock=sock, limit=MAX_REQUEST_HEAD_BYTES
                )
        except Exception as e:  # noqa: BLE001 - refusals and errors alike end the client
            log.warning("live view: cannot reach the desktop's noVNC: %s", e)
            return
        try:
            up_writer.write(rewritten)
            await up_writer.drain()
            async with asyncio.timeout(REQUEST_HEAD_TIMEOUT_S):
                answer = await up_reader.readuntil(_END)
            writer.write(answer)
            await writer.drain()
            status = answer.split(b" ", 2)[1] if answer.count(b" ") >= 2 else b""
            if upgrade and status == b"101":
                await _splice(reader, writer, up_reader, up_writer)
                return
            # One response, then the connection ends whatever the upstream would keep alive:
            # nothing more the client sends is read, so no second request gets through.
            length = _body_length(answer, method, status)
            if length is None:
                await _pump(up_reader, writer)
            else:
                await _copy(up_reader, writer, length)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            return
        finally:
            up_writer.close()


def _authorize(head: bytes, token: bytes) -> tuple[bytes, bytes, bool] | None:
    """The request head to send upstream (token cut from the path, one request only), its
    method and whether it asks for a websocket; None when the path does not start with
    ``/<token>/``."""
    lines = head[: -len(_END)].split(b"\r\n")
    if any(b"\n" in line or b"\r" in line for line in lines):
        return None  # a bare CR or LF: the upstream could see a head end (and a request) here
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[1].startswith(b"/"):
        return None
    method, target, version = parts
    first, slash, rest = target[1:].partition(b"/")
    if not hmac.compare_digest(first, token) or not slash:
        return None
    headers: list[bytes] = []
    upgrade = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        key = name.strip().lower()
        if key in _HOP_BY_HOP:
            continue
        if key == b"upgrade" and value.strip().lower() == b"websocket":
            upgrade = True
        headers.append(line)
    headers.append(b"Connection: Upgrade" if upgrade else b"Connection: close")
    request_line = b" ".join((method, b"/" + rest, version))
    return b"\r\n".join((request_line, *headers)) + _END, method, upgrade


def _body_length(head: bytes, method: bytes, status: bytes) -> int | None:
    """The length of the body after a response head (None: up to the end of the stream)."""
    if method == b"HEAD" or status in (b"204", b"304") or status.startswith(b"1"):
        return 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return int(value.strip())
    return None


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, length: int) -> None:
    """Copy exactly ``length`` bytes (``IncompleteReadError`` if the stream ends first)."""
    while length > 0:
        data = await reader.readexactly(min(length, _CHUNK))
        writer.write(data)
        await writer.drain()
        length -= len(data)


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
