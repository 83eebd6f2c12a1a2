"""File transfer over a desktop's SSH connection: tar streams, run as the target user.

Files travel as tar streams through ``tar`` run *as the target user*, not through a root SFTP
session: the files land owned by that user, and a symlink the user planted can never turn a
write or read done with root's rights into an escalation. The directory a transfer goes
through is entered one component at a time and never through a symbolic link (a path through
one is refused: name it without links, e.g. ``/usr/bin`` rather than ``/bin``); see
``_shell_programs.UNTAR`` and ``TAR``. Archives are spooled in temporary files on the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import posixpath
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import IO, cast

from ..errors import ShellError
from ._asyncssh import asyncssh
from ._shell_programs import TAR, UNTAR, User, as_user
from ._ssh_connection import SshConnection

__all__ = ["TRANSFER_TIMEOUT_S", "download", "upload"]

log = logging.getLogger(__name__)

TRANSFER_TIMEOUT_S = 600.0
"""The longest one upload or download may take."""
_CHUNK = 256 * 1024
_STDERR_LIMIT = 64 * 1024


async def upload(
    conn: SshConnection,
    local: Path,
    remote: str,
    *,
    user: User = "agent",
    timeout_s: float = TRANSFER_TIMEOUT_S,
) -> None:
    """Copy ``local`` to ``remote`` on ``conn``'s desktop as ``ShellSession.upload`` documents."""
    local = Path(local)
    if not await asyncio.to_thread(os.path.lexists, local):
        raise FileNotFoundError(f"upload: no such local file or directory: {local}")
    parent, name = _split_remote(remote)
    command = as_user(user, ["sh", "-c", UNTAR, "sh", parent])
    archive = await asyncio.to_thread(_pack, local, name)
    try:
        status, stderr = await _transfer(conn, command, timeout_s, send=archive)
    finally:
        archive.close()
    if status != 0:
        raise _transfer_error("upload to", remote, status, stderr)


async def download(
    conn: SshConnection,
    remote: str,
    local: Path,
    *,
    user: User = "agent",
    timeout_s: float = TRANSFER_TIMEOUT_S,
    max_bytes: int | None = None,
) -> None:
    """Copy ``remote`` from ``conn``'s desktop to ``local`` as ``ShellSession.download``
    documents."""
    local = Path(local)
    if not remote or "\0" in remote:
        raise ValueError(f"invalid remote path {remote!r}")
    follow = "follow" if user == "agent" else "nofollow"
    command = as_user(user, ["sh", "-c", TAR, "sh", _home_relative(remote), follow])
    spool = await asyncio.to_thread(tempfile.TemporaryFile)
    try:
        try:
            status, stderr = await _transfer(
                conn, command, timeout_s, receive=spool, receive_limit=max_bytes
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


class _OverLimit(Exception):
    """A transfer sent more than its limit (internal: raised as ``OSError`` EFBIG)."""


async def _transfer(
    conn: SshConnection,
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
        ssh: asyncssh.SSHClientConnection,
    ) -> tuple[asyncssh.SSHWriter[bytes], asyncssh.SSHReader[bytes], asyncssh.SSHReader[bytes]]:
        return await ssh.open_session(command, encoding=None)

    async with conn.slots:
        writer, reader, errors = await conn.open_channel(open_streams)
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
    if status is None and not conn.connected:
        raise ShellError("lost the SSH connection to the desktop during a file transfer")
    return status, stderr


async def _read_capped(reader: asyncssh.SSHReader[bytes], limit: int) -> bytes:
    kept = bytearray()
    while chunk := await reader.read(_CHUNK):
        kept += chunk[: max(limit - len(kept), 0)]
    return bytes(kept)


# ---------------------------------------------------------------------- remote paths


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


# ---------------------------------------------------------------------- archives on the host


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
