"""``ShellSession``: shell commands and file transfer over one SSH connection to a desktop.

The pieces, each in its own module:

- ``_ssh_connection``: the persistent connection through the desktop's unix socket, its
  pinned host key, reconnection, and the client key;
- ``_shell_programs``: the shell lines sent to sshd (as the user, under ``run-command``;
  the kill of a given-up command; the tar programs that walk a path without links);
- ``_ssh_commands``: one command's channel, its bounded output and its kill;
- ``_ssh_transfer``: uploads and downloads as tar streams run as the target user.

Example:
    >>> async def demo(sock: Path, host_key: Path) -> None:
    ...     key = generate_client_key()  # authorized_keys holds authorized_key_line(key)
    ...     shell = await ShellSession.connect(sock, key, host_key, timeout=10)
    ...     try:
    ...         print((await shell.run("echo hi")).stdout)  # hi
    ...     finally:
    ...         await shell.close()
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..actions import CommandResult
from . import _ssh_transfer
from ._asyncssh import asyncssh
from ._shell_programs import AS_AGENT, KILL_AFTER_S, RUN_COMMAND, User, build_command
from ._ssh_commands import MAX_OUTPUT_BYTES, run_command
from ._ssh_connection import (
    MAX_CHANNELS,
    SshConnection,
    authorized_key_line,
    generate_client_key,
)
from ._ssh_transfer import TRANSFER_TIMEOUT_S

__all__ = [
    "AS_AGENT",
    "KILL_AFTER_S",
    "MAX_OUTPUT_BYTES",
    "RUN_COMMAND",
    "ShellSession",
    "User",
    "authorized_key_line",
    "build_command",
    "generate_client_key",
]


class ShellSession(SshConnection):
    """One persistent SSH connection to a desktop: commands, uploads and downloads.

    Commands and transfers share the connection (at most ``max_channels`` at once, the rest
    wait). When the connection is found lost, the next call reconnects once, within
    ``RECONNECT_TIMEOUT_S``; a command whose connection drops while it runs is never re-run
    (it may have had effects): it raises ``ShellError``.

    Example:
        >>> shell = await ShellSession.connect(sock, key, host_key, timeout=10)  # doctest: +SKIP
        >>> (await shell.run("id -un")).stdout                                   # doctest: +SKIP
        'agent\\n'
    """

    def __init__(
        self,
        socket_path: Path,
        client_key: asyncssh.SSHKey,
        host_key_path: Path,
        *,
        connect_timeout: float,
        max_output_bytes: int = MAX_OUTPUT_BYTES,
        max_channels: int = MAX_CHANNELS,
    ) -> None:
        super().__init__(
            socket_path,
            client_key,
            host_key_path,
            connect_timeout=connect_timeout,
            max_channels=max_channels,
        )
        self._max_output = max_output_bytes

    @classmethod
    async def connect(
        cls,
        socket_path: Path,
        client_key: asyncssh.SSHKey,
        host_key_path: Path,
        *,
        timeout: float,  # noqa: ASYNC109 (the deadline of the whole call, in seconds)
        max_output_bytes: int = MAX_OUTPUT_BYTES,
        max_channels: int = MAX_CHANNELS,
    ) -> ShellSession:
        """Connect through the unix socket, retrying while it is not up yet, for ``timeout`` s.

        Raises ``ShellError`` at once when the host key does not match ``host_key_path`` or
        the client key is refused, and after ``timeout`` for anything else.
        """
        session = cls(
            socket_path,
            client_key,
            host_key_path,
            connect_timeout=timeout,
            max_output_bytes=max_output_bytes,
            max_channels=max_channels,
        )
        await session.reconnect()
        return session

    def __repr__(self) -> str:
        return f"ShellSession({str(self.socket_path)!r}, connected={self.connected})"

    async def run(
        self,
        cmd: str,
        *,
        timeout: float = 60,  # noqa: ASYNC109 (enforced remotely, see the docstring)
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        user: User = "agent",
    ) -> CommandResult:
        """Run ``cmd`` with ``bash -lc`` as ``user`` in ``cwd`` (default: the user's home).

        A command past ``timeout`` s is killed with every process it started (background
        jobs, and those that detached with setsid, nohup or a double fork) and comes back with
        ``timed_out=True``, ``exit_code=None`` and the output it had produced; a cancelled
        call kills them the same way. Background jobs that outlive a command (one that ended
        by itself, e.g. a daemon it started) keep running if they do not
        hold its output (redirect it, e.g. ``app >/dev/null 2>&1 &``); those that do are cut
        off from it ``EOF_GRACE_S`` after the command exits. Raises ``ShellError`` only when
        the connection fails; a failing command is a result.
        """
        return await run_command(
            self,
            cmd,
            timeout_s=timeout,
            cwd=cwd,
            env=env,
            user=user,
            max_output_bytes=self._max_output,
        )

    async def upload(
        self,
        local: Path,
        remote: str,
        *,
        user: User = "agent",
        timeout_s: float = TRANSFER_TIMEOUT_S,
    ) -> None:
        """Copy a local file or directory tree to ``remote`` on the desktop, owned by ``user``.

        ``remote`` is the path the copy gets (not a directory to put it in); relative paths
        and ``~/`` start at the user's home; missing parents are created. An existing file is
        replaced (a link there too, never written through); a directory is merged into an
        existing one. Raises ``FileNotFoundError`` when ``local`` is missing,
        ``PermissionError`` when the desktop refuses the write or the parent path goes through
        a symbolic link, ``OSError`` for other failures there, ``ShellError`` when the
        connection fails.
        """
        await _ssh_transfer.upload(self, local, remote, user=user, timeout_s=timeout_s)

    async def download(
        self,
        remote: str,
        local: Path,
        *,
        user: User = "agent",
        timeout_s: float = TRANSFER_TIMEOUT_S,
        max_bytes: int | None = None,
    ) -> None:
        """Copy a file or directory tree from the desktop to ``local``, read as ``user``;
        at most ``max_bytes`` of archive (``OSError`` EFBIG beyond, nothing written).

        ``local`` is the path the copy gets; its parents are created; an existing file is
        replaced and a directory merged into an existing one. Links in the tree that point
        outside it are skipped. A link at ``remote`` itself gives its target for the agent
        and is refused for root. Raises ``FileNotFoundError`` when ``remote`` is missing,
        ``PermissionError`` when it cannot be read or its parent path goes through a symbolic
        link (root: or it is one), ``OSError`` for other failures there, ``ShellError`` when
        the connection fails.
        """
        await _ssh_transfer.download(
            self, remote, local, user=user, timeout_s=timeout_s, max_bytes=max_bytes
        )
