"""``ShellSession``: shell commands and file transfer over one SSH connection to a desktop.

The desktop's sshd is reached through a unix socket in the desktop's bind-mounted run
directory (no IP traffic at all) and its host key is pinned from a file the container writes
there. Each command is a new channel on the one persistent connection, so a round trip costs
milliseconds. Commands run as the desktop user through a privilege-dropping prefix
(``AS_AGENT``), under the image's ``run-command`` (``RUN_COMMAND``), a time limit that is also
a child subreaper: a command past its deadline is killed with every process it started, those
that detached (setsid, nohup, a double fork) too, and the output it produced before is kept.

Files travel as tar streams through ``tar`` run *as the target user*, not through a root SFTP
session: the files land owned by that user, and a symlink the user planted can never turn a
write or read done with root's rights into an escalation. The directory a transfer goes
through is entered one component at a time and never through a symbolic link (a path through
one is refused: name it without links, e.g. ``/usr/bin`` rather than ``/bin``).

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

import asyncio
import contextlib
import errno
import logging
import os
import posixpath
import re
import shlex
import shutil
import socket
import tarfile
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Literal, TypeVar, cast

from cryptography.utils import CryptographyDeprecationWarning

from ..actions import CommandResult
from ..errors import ShellError
from . import _container, _hostfs

# asyncssh names cryptography's DSA classes in its annotations, and cryptography warns at each
# name (DSA is deprecated there) when asyncssh is imported: five lines on the stderr of every
# CLI command and Ray worker. No DSA key is ever made or accepted here. Exactly that warning
# class, raised from asyncssh's own modules, is ignored; every other warning still shows.
warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning, module=r"asyncssh\.")

import asyncssh  # noqa: E402 - after the filter above
from asyncssh.constants import EXTENDED_DATA_STDERR, OPEN_CONNECT_FAILED  # noqa: E402

__all__ = [
    "AS_AGENT",
    "MAX_OUTPUT_BYTES",
    "RUN_COMMAND",
    "ShellSession",
    "User",
    "authorized_key_line",
    "build_command",
    "generate_client_key",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

User = Literal["agent", "root"]
"""Who a command runs as: the unprivileged desktop user or root."""

AS_AGENT: tuple[str, ...] = (
    "setpriv",
    "--reuid=agent",
    "--regid=agent",
    "--init-groups",
    "--reset-env",
)
"""The argv prefix that runs a command as the desktop user (root logs in over SSH).

It must set ``HOME``, drop every privilege and keep the command in sshd's session: exec it
(setpriv), or forward SIGTERM to it (runuser). ``("runuser", "-u", "agent", "--")`` is the
drop-in alternative.
"""

AGENT_PASSTHROUGH_ENV: tuple[str, ...] = ("DISPLAY", "LANG", "LC_ALL", "TZ")
"""Variables of the SSH session (sshd_config ``SetEnv``) handed on to the user's commands,
which the prefix otherwise starts with a clean environment."""

RUN_COMMAND = "/usr/local/bin/run-command"
"""The desktop image's supervisor every command runs under (``desktop_image/run-command``):
``run-command LIMIT_S KILL_AFTER_S COMMAND...``. A child subreaper (no privilege needed):
past the limit, or on TERM, every process of the command's tree, detached or not, gets TERM
and then KILL; a command that ends by itself leaves its background daemons running."""
KILL_AFTER_S = 2.0
"""A timed-out command's processes get SIGTERM, then SIGKILL this much later (all of them)."""
CLIENT_GRACE_S = 2.0
"""Past timeout + KILL_AFTER_S + this, the client gives up on the channel and closes it."""
EOF_GRACE_S = 0.5
"""After a command exits, how long to wait for background jobs that still hold its output."""
MAX_OUTPUT_BYTES = 1 << 20
"""Output kept per stream and command: the first and the last half, with a marker between."""
MAX_CHANNELS = 8
"""Channels open at once on the connection (OpenSSH's MaxSessions defaults to 10)."""
KEEPALIVE_INTERVAL_S = 3.0
KEEPALIVE_COUNT_MAX = 3
RECONNECT_TIMEOUT_S = 5.0
"""How long a command waits for a lost connection to come back before failing."""
TRANSFER_TIMEOUT_S = 600.0

_ARGV_SCRIPT_LIMIT = 100_000  # Linux caps one argv string at 128 KiB; larger scripts use stdin
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_CHUNK = 256 * 1024
_STDERR_LIMIT = 64 * 1024
_CLOSE_VISIBLE_S = 1.0  # a connection that lost its transport is marked closed a step later
_TIMEOUT_STATUSES = (124, 128 + 9)  # run-command (as timeout(1)): TERM worked / KILL was needed

# Every command first reports, as the first line of its stderr, the pid that ``run-command`` will
# have (exec keeps it; sshd made it a session and process group leader), so that a cancelled
# command can be killed: OpenSSH refuses signal requests in inetd mode (``sshd -i``).
_REPORT_PID = 'echo "$$" >&2; '
# Kill a command by that pid, if it is still the session leader it was (not a reused pid);
# run-command passes the TERM on to every process below it and escalates to KILL.
_KILL = (
    's=$(cat /proc/{pid}/stat 2>/dev/null) || exit 0; set -- ${{s##*")"}}; '
    '[ "$4" = {pid} ] && kill -s TERM -- {pid}'
)
# Enter the directory "$1" (relative paths start at the user's home; "." and ".." are taken
# lexically) one component at a time from /, never through a symbolic link, creating the
# missing ones when $2 is "mkdir": a link the agent planted in the path cannot redirect a
# transfer done with root's rights. After each step the working directory must physically be
# the path spelled out, which also catches a directory swapped for a link once checked.
# Exit 2: failed; 3: a component is missing; 5: a link was refused (tar's 1 is a warning).
_WALK = r"""walk() {
  local t p c
  cd || exit 2
  t=$(realpath -m -s -- "$1") || exit 2
  cd / || exit 2
  p=
  IFS=/
  set -f
  for c in ${t#/}; do
    p=$p/$c
    if [ -L "./$c" ]; then
      echo "refusing to follow the symbolic link $p (to $(realpath -m -- "$p")):" \
        "name the path without links" >&2
      exit 5
    fi
    if [ ! -e "./$c" ] && [ "$2" = mkdir ]; then mkdir -- "./$c" || exit 2; fi
    if [ ! -e "./$c" ]; then echo "$p: No such file or directory" >&2; exit 3; fi
    if [ ! -d "./$c" ]; then echo "$p: Not a directory" >&2; exit 2; fi
    if [ ! -x "./$c" ]; then echo "$p: Permission denied" >&2; exit 2; fi
    cd -P -- "./$c" || exit 2
    if [ "$(pwd -P)" != "$p" ]; then
      echo "refusing to follow $p: it was replaced by a symbolic link" >&2
      exit 5
    fi
  done
  unset IFS
  set +f
}
"""
# Upload: extract a tar stream from stdin into the directory "$1", created as needed.
_UNTAR = _WALK + 'walk "$1" mkdir && exec tar -x --no-same-owner -f -'
# Download: archive "$1" with its top-level name as "x". A link at "$1" itself gives its
# target when $2 is "follow" and is refused otherwise; exit 3 when the path is missing.
_TAR = (
    _WALK
    + """cd || exit 2
t=$(realpath -m -s -- "$1") || exit 2
if [ "$t" = / ]; then echo "refusing to download /" >&2; exit 4; fi
walk "${t%/*}/"
n=${t##*/}
if [ -L "./$n" ]; then
  if [ "$2" != follow ]; then
    echo "refusing to follow the symbolic link $t (to $(realpath -m -- "./$n"))" >&2
    exit 5
  fi
  t=$(realpath -e -- "./$n") || exit 3
  if [ "$t" = / ]; then echo "refusing to download /" >&2; exit 4; fi
  cd -- "${t%/*}/" || exit 2
  n=${t##*/}
elif [ ! -e "./$n" ]; then
  echo "$t: No such file or directory" >&2
  exit 3
fi
exec tar -c -f - --transform="s,^[^/]*,x,S" -- "$n"
"""
)


def generate_client_key() -> asyncssh.SSHKey:
    """A fresh ed25519 key for one desktop's SSH client (never written to disk)."""
    return asyncssh.generate_private_key("ssh-ed25519", comment="orchestrator")


def authorized_key_line(key: asyncssh.SSHKey) -> str:
    """The ``authorized_keys`` line (OpenSSH format, no newline) for ``key``'s public half."""
    return key.export_public_key("openssh").decode().strip()


def _as_user(user: User, argv: Sequence[str], *, runner: Sequence[str] = ()) -> str:
    """The shell line (for root's login shell, run by sshd) that execs ``argv`` as ``user``,
    through ``runner`` if given: a program that takes ``NAME=VALUE`` arguments before the
    command, as env(1) does (``run-command`` does: one exec less per command than env)."""
    if user == "root":
        return "exec " + shlex.join([*runner, *argv])
    if user != "agent":
        raise ValueError(f"user must be 'agent' or 'root', not {user!r}")
    # ${V+"V=$V"}: the variable's assignment when it is set in the session, else nothing.
    passthrough = " ".join(f'${{{name}+"{name}=${name}"}}' for name in AGENT_PASSTHROUGH_ENV)
    via = shlex.join(runner or ["env"])
    return f"exec {shlex.join(AS_AGENT)} {via} {passthrough} {shlex.join(argv)}"


def _cd(cwd: str | None) -> str:
    if cwd is None or cwd == "~":
        return "cd"
    if cwd.startswith("~/"):
        return "cd -- ~/" + shlex.quote(cwd[2:])
    return "cd -- " + shlex.quote(cwd)


def build_command(
    cmd: str,
    *,
    timeout: float,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    user: User = "agent",
) -> tuple[str, bytes | None]:
    """The remote command line that ``run`` sends, and the stdin to feed it (or None).

    The script is ``cd``, then ``export`` of ``env`` (after the login profile, so the
    caller's values win), then ``cmd``, run by ``bash -lc`` under ``RUN_COMMAND`` as ``user``.
    """
    if not timeout > 0:
        raise ValueError(f"timeout must be positive, not {timeout!r}")
    if "\0" in cmd or (cwd is not None and "\0" in cwd):
        raise ValueError("a command or directory cannot contain NUL")
    lines = [f"{_cd(cwd)} || exit 1"]
    for name, value in (env or {}).items():
        if not _ENV_NAME.match(name):
            raise ValueError(f"invalid environment variable name {name!r}")
        if "\0" in value:
            raise ValueError(f"environment variable {name} contains NUL")
        lines.append(f"export {name}={shlex.quote(value)}")
    lines.append(cmd)
    script = "\n".join(lines)
    limit = [RUN_COMMAND, f"{timeout:.3f}", f"{KILL_AFTER_S:g}"]
    if len(shlex.quote(script).encode()) <= _ARGV_SCRIPT_LIMIT:
        return _REPORT_PID + _as_user(user, ["bash", "-lc", script], runner=limit), None
    via_stdin = 'script=$(cat) && exec </dev/null && eval "$script"'
    command = _as_user(user, ["bash", "-lc", via_stdin], runner=limit)
    return _REPORT_PID + command, script.encode()


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


class ShellSession:
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
        self.socket_path = Path(socket_path)
        self.host_key_path = Path(host_key_path)
        self._client_key = client_key
        self._connect_timeout = connect_timeout
        self._max_output = max_output_bytes
        self._slots = asyncio.Semaphore(max_channels)
        self._lock = asyncio.Lock()
        self._conn: asyncssh.SSHClientConnection | None = None
        self._closed = False

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

    @property
    def connected(self) -> bool:
        """Whether the connection is up (as far as the client knows)."""
        return self._conn is not None and not self._conn.is_closed()

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

    # ------------------------------------------------------------------ commands

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
        command, stdin = build_command(cmd, timeout=timeout, cwd=cwd, env=env, user=user)
        limit = self._max_output

        def factory() -> _Collector:
            return _Collector(limit)

        async def open_channel(
            conn: asyncssh.SSHClientConnection,
        ) -> tuple[asyncssh.SSHClientChannel[bytes], asyncssh.SSHClientSession[bytes]]:
            return await conn.create_session(factory, command, encoding=None)

        async with self._slots:
            t0 = time.monotonic()
            chan, session = await self._open(open_channel)
            assert isinstance(session, _Collector)
            with contextlib.suppress(OSError):
                if stdin is not None:
                    chan.write(stdin)
                chan.write_eof()
            client_timed_out = await self._wait(chan, session, timeout)
            duration = time.monotonic() - t0
        status = session.exit_status
        if status is None and session.exit_signal is None and not client_timed_out:
            if self._closed:
                raise ShellError("the shell session was closed while a command ran")
            if session.lost is not None:
                raise ShellError(
                    f"lost the SSH connection to the desktop while running a command "
                    f"(it may have run in part): {session.lost}"
                )
        timed_out = client_timed_out or (
            duration >= timeout and (status in _TIMEOUT_STATUSES or session.exit_signal is not None)
        )
        return CommandResult(
            exit_code=None if timed_out else status,
            stdout=session.stdout.text(),
            stderr=session.stderr.text(),
            timed_out=timed_out,
            duration_s=duration,
        )

    async def _wait(
        self, chan: asyncssh.SSHClientChannel[bytes], session: _Collector, limit_s: float
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
                    await self._kill(session.pid)

    async def _kill(self, pid: int | None) -> None:
        """Best effort: TERM (then KILL) a remote command whose channel was given up."""
        conn = self._conn
        if pid is None or conn is None or conn.is_closed():
            return
        try:
            async with asyncio.timeout(2.0):
                await conn.run(_KILL.format(pid=pid), check=False)
        except (OSError, asyncssh.Error) as e:  # TimeoutError is an OSError
            log.warning("could not kill remote command %d: %s", pid, e)

    # ------------------------------------------------------------------ files

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
        local = Path(local)
        if not await asyncio.to_thread(os.path.lexists, local):
            raise FileNotFoundError(f"upload: no such local file or directory: {local}")
        parent, name = _split_remote(remote)
        command = _as_user(user, ["sh", "-c", _UNTAR, "sh", parent])
        archive = await asyncio.to_thread(_pack, local, name)
        try:
            status, stderr = await self._transfer(command, timeout_s, send=archive)
        finally:
            archive.close()
        if status != 0:
            raise _transfer_error("upload to", remote, status, stderr)

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
        local = Path(local)
        if not remote or "\0" in remote:
            raise ValueError(f"invalid remote path {remote!r}")
        follow = "follow" if user == "agent" else "nofollow"
        command = _as_user(user, ["sh", "-c", _TAR, "sh", _home_relative(remote), follow])
        spool = await asyncio.to_thread(tempfile.TemporaryFile)
        try:
            try:
                status, stderr = await self._transfer(
                    command, timeout_s, receive=spool, receive_limit=max_bytes
                )
            except OSError as e:
                raise OSError(e.errno, f"download of {remote}: {e.strerror}") from None
            if status not in (0, 1):  # GNU tar: 1 means a file changed while it was read
                raise _transfer_error("download of", remote, status, stderr)
            if status == 1:
                log.warning("download of %s: %s", remote, stderr.decode(errors="replace"))
            await asyncio.to_thread(_unpack, spool, local)
        finally:
            spool.close()

    async def _transfer(
        self,
        command: str,
        timeout_s: float,
        *,
        send: IO[bytes] | None = None,
        receive: IO[bytes] | None = None,
        receive_limit: int | None = None,
    ) -> tuple[int | None, bytes]:
        """Run ``command`` streaming ``send`` to its stdin and its stdout into ``receive``
        (``OSError`` EFBIG, the command stopped, once more than ``receive_limit`` bytes came)."""

        async def open_streams(
            conn: asyncssh.SSHClientConnection,
        ) -> tuple[asyncssh.SSHWriter[bytes], asyncssh.SSHReader[bytes], asyncssh.SSHReader[bytes]]:
            return await conn.open_session(command, encoding=None)

        async with self._slots:
            writer, reader, errors = await self._open(open_streams)
            chan = cast(asyncssh.SSHClientChannel[bytes], writer.channel)
            stderr_task = asyncio.create_task(_read_capped(errors, _STDERR_LIMIT))
            try:
                async with asyncio.timeout(timeout_s):
                    with contextlib.suppress(OSError, asyncssh.Error):  # it ended early
                        while send is not None and (
                            chunk := await asyncio.to_thread(send.read, _CHUNK)
                        ):
                            writer.write(chunk)
                            await writer.drain()
                        writer.write_eof()
                    received = 0
                    while chunk := await reader.read(_CHUNK):
                        received += len(chunk)
                        if receive_limit is not None and received > receive_limit:
                            raise _OverLimit
                        if receive is not None:
                            await asyncio.to_thread(receive.write, chunk)
                    stderr = await stderr_task
                    await chan.wait_closed()
            except _OverLimit:
                raise OSError(errno.EFBIG, f"more than {receive_limit} bytes") from None
            except TimeoutError:
                raise ShellError(f"file transfer did not finish within {timeout_s:g} s") from None
            except (OSError, asyncssh.Error) as e:
                raise ShellError(f"file transfer interrupted: {e}") from e
            finally:
                stderr_task.cancel()
                chan.close()
        status = chan.get_exit_status()
        if status is None and self._conn is not None and self._conn.is_closed():
            raise ShellError("lost the SSH connection to the desktop during a file transfer")
        return status, stderr

    # ------------------------------------------------------------------ connection

    async def _open(self, opener: Callable[[asyncssh.SSHClientConnection], Awaitable[T]]) -> T:
        """Open a channel with ``opener``; reconnect and retry once if the connection was lost."""
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


HOST_KEY_MAX_BYTES = 16 * 1024
"""The most the host reads of the desktop's ``ssh_host_key.pub`` (one key line)."""


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


# ---------------------------------------------------------------------- transfer helpers


def _home_relative(path: str) -> str:
    """``path`` with a leading ``~`` made relative (commands start in the user's home)."""
    if path == "~":
        return "."
    if path.startswith("~/"):
        return path[2:] or "."
    return path


def _split_remote(remote: str) -> tuple[str, str]:
    """(parent directory, name) of an upload target; relative parents start at home."""
    if "\0" in remote:
        raise ValueError("a remote path cannot contain NUL")
    path = _home_relative(remote).rstrip("/")
    parent, name = posixpath.split(path)
    if name in ("", ".", ".."):
        raise ValueError(f"upload target must name a file or directory, not {remote!r}")
    return parent or ".", name


def _transfer_error(what: str, path: str, status: int | None, stderr: bytes) -> OSError:
    detail = stderr.decode("utf-8", errors="replace").strip() or f"exit status {status}"
    message = f"{what} {path!r} on the desktop failed: {detail}"
    if status == 5 or "Permission denied" in detail:
        return PermissionError(message)
    if status == 3 or "No such file or directory" in detail:
        return FileNotFoundError(message)
    return OSError(message)


async def _read_capped(reader: asyncssh.SSHReader[bytes], limit: int) -> bytes:
    kept = bytearray()
    while chunk := await reader.read(_CHUNK):
        kept += chunk[: max(limit - len(kept), 0)]
    return bytes(kept)


def _anonymous(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _pack(local: Path, name: str) -> IO[bytes]:
    """``local`` (recursively) as a tar archive whose top-level entry is ``name``."""
    spool = tempfile.TemporaryFile()
    try:
        with tarfile.open(fileobj=spool, mode="w") as tar:
            tar.add(local, arcname=name, recursive=True, filter=_anonymous)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool


def _within(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
    """tarfile's ``data`` filter, skipping (not failing on) links that point outside."""
    try:
        return tarfile.data_filter(member, dest)
    except (tarfile.AbsoluteLinkError, tarfile.LinkOutsideDestinationError):
        log.warning(
            "download: skipped %s, a link to %s outside the tree", member.name, member.linkname
        )
        return None


class _OverLimit(Exception):
    """A transfer sent more than its limit (internal: raised as ``OSError`` EFBIG)."""


def _unpack(spool: IO[bytes], local: Path) -> None:
    """Extract a download archive (top-level entry ``x``) so that it becomes ``local``."""
    spool.seek(0)
    local.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=local.parent))
    try:
        with tarfile.open(fileobj=spool, mode="r:") as tar:
            tar.extractall(staging, filter=_within)
        got = staging / "x"
        if not os.path.lexists(got):
            raise OSError(f"download to {local}: the desktop sent an empty archive")
        if got.is_dir() and not got.is_symlink() and local.is_dir():
            shutil.copytree(got, local, symlinks=True, dirs_exist_ok=True)
        else:
            os.replace(got, local)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
