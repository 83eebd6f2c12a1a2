"""``SshConnection``: the one persistent SSH connection to a desktop, and its keys.

The desktop's sshd is reached through a unix socket in the desktop's bind-mounted run
directory (no IP traffic at all) and its host key is pinned from a file the container writes
there. Each command or transfer is a new channel on the connection (at most
``max_channels`` at once), so a round trip costs milliseconds. When the connection is found
lost, the next channel reconnects once, within ``RECONNECT_TIMEOUT_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from ..errors import ShellError
from . import _container, _hostfs
from ._asyncssh import OPEN_CONNECT_FAILED, asyncssh

__all__ = [
    "MAX_CHANNELS",
    "RECONNECT_TIMEOUT_S",
    "SshConnection",
    "authorized_key_line",
    "client_key",
    "generate_client_key",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_CHANNELS = 8
"""Channels open at once on the connection (OpenSSH's MaxSessions defaults to 10)."""
KEEPALIVE_INTERVAL_S = 3.0
KEEPALIVE_COUNT_MAX = 3
RECONNECT_TIMEOUT_S = 5.0
"""How long a command waits for a lost connection to come back before failing."""
HOST_KEY_MAX_BYTES = 16 * 1024
"""The most the host reads of the desktop's ``ssh_host_key.pub`` (one key line)."""
_CLOSE_VISIBLE_S = 1.0  # a connection that lost its transport is marked closed a step later


def generate_client_key() -> asyncssh.SSHKey:
    """A fresh ed25519 key for one desktop's SSH client (never written to disk)."""
    return asyncssh.generate_private_key("ssh-ed25519", comment="orchestrator")


def client_key(private: bytes | None) -> asyncssh.SSHKey:
    """The key ``private`` (OpenSSH format) when given, else a fresh one."""
    return generate_client_key() if private is None else asyncssh.import_private_key(private)


def authorized_key_line(key: asyncssh.SSHKey) -> str:
    """The ``authorized_keys`` line (OpenSSH format, no newline) for ``key``'s public half."""
    return key.export_public_key("openssh").decode().strip()


class SshConnection:
    """One persistent SSH connection as root, through a desktop's unix socket.

    ``open_channel`` opens a channel on it (reconnecting once if it was lost); callers hold
    one of ``slots`` while their channel is open. ``ShellSession`` adds commands and
    transfers on top.
    """

    def __init__(
        self,
        socket_path: Path,
        client_key: asyncssh.SSHKey,
        host_key_path: Path,
        *,
        connect_timeout: float,
        max_channels: int = MAX_CHANNELS,
    ) -> None:
        self.socket_path = Path(socket_path)
        self.host_key_path = Path(host_key_path)
        self._client_key = client_key
        self._connect_timeout = connect_timeout
        self.slots = asyncio.Semaphore(max_channels)
        """Held while a channel is open: at most ``max_channels`` at once, the rest wait."""
        self._lock = asyncio.Lock()
        self._conn: asyncssh.SSHClientConnection | None = None
        self._closed = False

    @property
    def connected(self) -> bool:
        """Whether the connection is up (as far as the client knows)."""
        return self._conn is not None and not self._conn.is_closed()

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called (no reconnection any more)."""
        return self._closed

    @property
    def current(self) -> asyncssh.SSHClientConnection | None:
        """The asyncssh connection while it is up, else None (never reconnects)."""
        return self._conn if self.connected else None

    async def reconnect(self, timeout_s: float | None = None) -> None:
        """Drop the current connection (if any) and connect again (default: connect's timeout)."""
        async with self._lock:
            await self._replace(self._connect_timeout if timeout_s is None else timeout_s)

    async def close(self) -> None:
        """Close the connection. Commands still running lose their output and end at their
        remote timeout at the latest; cancel their ``run`` calls first to kill them at once."""
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await conn.wait_closed()

    async def open_channel(
        self, opener: Callable[[asyncssh.SSHClientConnection], Awaitable[T]]
    ) -> T:
        """Open a channel with ``opener``; reconnect and retry once if the connection was lost.

        Raises ``ShellError`` when the channel cannot be opened.
        """
        conn = await self._connection()
        try:
            return await opener(conn)
        except (OSError, asyncssh.Error) as e:
            if not await _was_lost(conn, e):
                raise ShellError(f"the desktop's sshd refused a channel: {e}") from e
            log.debug("opening a channel found the SSH connection lost: %s", e)
        conn = await self._connection()
        try:
            return await opener(conn)
        except (OSError, asyncssh.Error) as e:
            raise ShellError(f"the desktop's sshd refused a channel: {e}") from e

    async def _connection(self) -> asyncssh.SSHClientConnection:
        conn = self._conn
        if conn is not None and not conn.is_closed():
            return conn
        async with self._lock:
            if self._conn is None or self._conn.is_closed():
                if self._closed:
                    raise ShellError("the shell session is closed")
                log.info("SSH connection through %s lost; reconnecting", self.socket_path)
                await self._replace(min(self._connect_timeout, RECONNECT_TIMEOUT_S))
            assert self._conn is not None
            return self._conn

    async def _replace(self, timeout_s: float) -> None:
        if self._closed:
            raise ShellError("the shell session is closed")
        old, self._conn = self._conn, None
        if old is not None:
            old.abort()
        self._conn = await _dial(self.socket_path, self._client_key, self.host_key_path, timeout_s)


async def _was_lost(conn: asyncssh.SSHClientConnection, error: BaseException) -> bool:
    """Whether ``error``, from opening a channel on ``conn``, means the connection is gone.

    asyncssh drops a lost connection's transport at once but marks the connection closed
    (``is_closed()``) only a loop step later; a channel opened in between fails with
    ``ChannelOpenError(OPEN_CONNECT_FAILED, "SSH connection closed")``. Such an error (or
    another that a lost connection raises) waits briefly for the close to become visible.
    """
    if conn.is_closed():
        return True
    maybe_lost = isinstance(error, OSError | asyncssh.DisconnectError) or (
        isinstance(error, asyncssh.ChannelOpenError) and error.code == OPEN_CONNECT_FAILED
    )
    if not maybe_lost:
        return False
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(_CLOSE_VISIBLE_S):
            await conn.wait_closed()
    return conn.is_closed()


async def _dial(
    socket_path: Path, client_key: asyncssh.SSHKey, host_key_path: Path, timeout_s: float
) -> asyncssh.SSHClientConnection:
    """Connect, retrying what may be a desktop still starting, for ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    delay = 0.02
    while True:
        try:
            async with asyncio.timeout_at(deadline):
                return await _dial_once(socket_path, client_key, host_key_path)
        except asyncssh.HostKeyNotVerifiable as e:
            raise ShellError(
                f"the desktop's SSH host key does not match the pinned key in {host_key_path}: {e}"
            ) from e
        except asyncssh.PermissionDenied as e:
            raise ShellError(
                f"the desktop's sshd refused the client key (check authorized_keys): {e}"
            ) from e
        except (OSError, asyncssh.Error, asyncssh.KeyImportError) as e:
            last: BaseException = e
        if loop.time() + delay >= deadline:
            what = f"{type(last).__name__}: {last}" if str(last) else type(last).__name__
            raise ShellError(
                f"no SSH connection to the desktop through {socket_path} "
                f"within {timeout_s:g} s (last error: {what})"
            ) from last
        await asyncio.sleep(delay)  # back off before the next attempt
        delay = min(delay * 2, 0.25)


async def _dial_once(
    socket_path: Path, client_key: asyncssh.SSHKey, host_key_path: Path
) -> asyncssh.SSHClientConnection:
    # Both the key and the socket are in a directory the container writes: read and
    # connect through _hostfs (no links; the listener must be the desktop's own sshd).
    raw = await asyncio.to_thread(_hostfs.read_file, host_key_path, max_bytes=HOST_KEY_MAX_BYTES)
    if raw is None:
        raise FileNotFoundError(errno.ENOENT, "no SSH host key (yet)", str(host_key_path))
    host_key = asyncssh.import_public_key(raw)
    # (trusted host keys, trusted CA keys, revoked keys), matched against no host name:
    # a unix socket peer has no address to match.
    no_keys: list[asyncssh.SSHKey] = []
    known_hosts = ([host_key], no_keys, no_keys)
    sock = await asyncio.to_thread(_connect_sshd, socket_path)
    try:
        sock.setblocking(False)
        return await asyncssh.connect(
            sock=sock,
            config=None,
            username="root",
            client_keys=[client_key],
            known_hosts=known_hosts,
            preferred_auth="publickey",
            agent_path=None,
            compression_algs=["none"],
            keepalive_interval=KEEPALIVE_INTERVAL_S,
            keepalive_count_max=KEEPALIVE_COUNT_MAX,
        )
    except BaseException:
        sock.close()
        raise


def _connect_sshd(socket_path: Path) -> socket.socket:
    """Connect to ``<sockdir>/run/ssh.sock``, served by the container of that sockdir."""
    with _hostfs.pin_socket(socket_path) as pin:  # FileNotFoundError: not up yet
        return pin.connect(_container.container_of(socket_path.parent.parent))
