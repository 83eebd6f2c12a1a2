"""Command runs over a desktop's SSH connection: one channel per command, output kept
bounded as it streams in, and the remote command killed when its call is given up.

The command line comes from ``_shell_programs.build_command``: the desktop's
``run-command`` enforces the time limit remotely (the client waits a little longer, then
gives up on the channel), and the pid the command reports first lets a cancelled call kill it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping

from ..actions import CommandResult
from ..errors import ShellError
from ._asyncssh import EXTENDED_DATA_STDERR, asyncssh
from ._shell_programs import KILL, KILL_AFTER_S, User, build_command
from ._ssh_connection import SshConnection

__all__ = ["CLIENT_GRACE_S", "EOF_GRACE_S", "MAX_OUTPUT_BYTES", "run_command"]

log = logging.getLogger(__name__)

CLIENT_GRACE_S = 2.0
"""Past timeout + KILL_AFTER_S + this, the client gives up on the channel and closes it."""
EOF_GRACE_S = 0.5
"""After a command exits, how long to wait for background jobs that still hold its output."""
MAX_OUTPUT_BYTES = 1 << 20
"""Output kept per stream and command: the first and the last half, with a marker between."""
_TIMEOUT_STATUSES = (124, 128 + 9)  # run-command (as timeout(1)): TERM worked / KILL was needed


class _Capture:
    """Bytes of one output stream, bounded: the first and the last ``limit / 2`` bytes."""

    def __init__(self, limit: int) -> None:
        self._head_limit = limit // 2
        self._tail_limit = limit - self._head_limit
        self._head = bytearray()
        self._tail = bytearray()
        self._dropped = 0

    def add(self, data: bytes) -> None:
        room = self._head_limit - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if not data:
            return
        self._tail += data
        excess = len(self._tail) - self._tail_limit
        if excess > 0:
            del self._tail[:excess]
            self._dropped += excess

    def text(self) -> str:
        if not self._dropped:
            return (self._head + self._tail).decode("utf-8", errors="replace")
        marker = f"\n[... {self._dropped} bytes of output omitted ...]\n"
        head = self._head.decode("utf-8", errors="replace")
        return head + marker + self._tail.decode("utf-8", errors="replace")


class _Collector(asyncssh.SSHClientSession[bytes]):
    """One command's channel: captures output as it streams in and notes how it ended."""

    def __init__(self, limit: int) -> None:
        self.stdout = _Capture(limit)
        self.stderr = _Capture(limit)
        self.pid: int | None = None  # of the remote command, from its first stderr line
        self._pid_line: bytearray | None = bytearray()
        self.exit_status: int | None = None
        self.exit_signal: str | None = None
        self.lost: Exception | None = None
        self.finished = asyncio.Event()  # exit reported, or channel closed
        self.closed = asyncio.Event()

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if datatype != EXTENDED_DATA_STDERR:
            self.stdout.add(data)
            return
        if self._pid_line is not None:
            line, newline, data = data.partition(b"\n")
            self._pid_line += line
            if not newline:
                return
            if self._pid_line.isdigit():
                self.pid = int(self._pid_line)
            else:  # something spoke before the shell did (sshd itself): keep it
                data = bytes(self._pid_line) + newline + data
            self._pid_line = None
        self.stderr.add(data)

    def exit_status_received(self, status: int) -> None:
        self.exit_status = status
        self.finished.set()

    def exit_signal_received(self, signal: str, core_dumped: bool, msg: str, lang: str) -> None:
        self.exit_signal = signal
        self.finished.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc
        self.finished.set()
        self.closed.set()


async def run_command(
    conn: SshConnection,
    cmd: str,
    *,
    timeout_s: float,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    user: User = "agent",
    max_output_bytes: int = MAX_OUTPUT_BYTES,
) -> CommandResult:
    """Run ``cmd`` on ``conn`` as ``ShellSession.run`` documents it."""
    command, stdin = build_command(cmd, timeout=timeout_s, cwd=cwd, env=env, user=user)

    def factory() -> _Collector:
        return _Collector(max_output_bytes)

    async def open_channel(
        ssh: asyncssh.SSHClientConnection,
    ) -> tuple[asyncssh.SSHClientChannel[bytes], asyncssh.SSHClientSession[bytes]]:
        return await ssh.create_session(factory, command, encoding=None)

    async with conn.slots:
        t0 = time.monotonic()
        chan, session = await conn.open_channel(open_channel)
        assert isinstance(session, _Collector)
        with contextlib.suppress(OSError):
            if stdin is not None:
                chan.write(stdin)
            chan.write_eof()
        client_timed_out = await _wait(conn, chan, session, timeout_s)
        duration = time.monotonic() - t0
    status = session.exit_status
    if status is None and session.exit_signal is None and not client_timed_out:
        if conn.closed:
            raise ShellError("the shell session was closed while a command ran")
        if session.lost is not None:
            raise ShellError(
                f"lost the SSH connection to the desktop while running a command "
                f"(it may have run in part): {session.lost}"
            )
    timed_out = client_timed_out or (
        duration >= timeout_s and (status in _TIMEOUT_STATUSES or session.exit_signal is not None)
    )
    return CommandResult(
        exit_code=None if timed_out else status,
        stdout=session.stdout.text(),
        stderr=session.stderr.text(),
        timed_out=timed_out,
        duration_s=duration,
    )


async def _wait(
    conn: SshConnection,
    chan: asyncssh.SSHClientChannel[bytes],
    session: _Collector,
    limit_s: float,
) -> bool:
    """Wait for the command to end; True if the client-side deadline passed first."""
    try:
        try:
            async with asyncio.timeout(limit_s + KILL_AFTER_S + CLIENT_GRACE_S):
                await session.finished.wait()
        except TimeoutError:
            return True
        if not session.closed.is_set():  # exited; background jobs may hold the output
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(EOF_GRACE_S):
                    await session.closed.wait()
        return False
    finally:  # also on cancellation: the remote command must not outlive the call
        if not session.closed.is_set():
            chan.close()
            if session.exit_status is None and session.exit_signal is None:
                await _kill(conn, session.pid)


async def _kill(conn: SshConnection, pid: int | None) -> None:
    """Best effort: TERM (then KILL) a remote command whose channel was given up."""
    ssh = conn.current
    if pid is None or ssh is None:
        return
    try:
        async with asyncio.timeout(2.0):
            await ssh.run(KILL.format(pid=pid), check=False)
    except (OSError, asyncssh.Error) as e:  # TimeoutError is an OSError
        log.warning("could not kill remote command %d: %s", pid, e)
