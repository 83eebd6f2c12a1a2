"""Content-addressed blob files: ``blobs/ab/cdef…`` named by the sha256 of their bytes.

A blob is written to a temporary file under ``blobs/.tmp``, fsynced, renamed into place
atomically and its directory fsynced, so a blob file is whole or absent, never half-written.
A writer holds an exclusive ``flock`` on its temporary file until the rename; a temporary
file nobody holds and older than a minute was left by a crashed writer and is removed on
open (no record ever refers to a temporary file).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import secrets
import time
from pathlib import Path

from ..errors import RecordError

__all__ = ["BlobFiles", "address_of", "check_address"]

log = logging.getLogger(__name__)

_ADDRESS = re.compile(r"^[0-9a-f]{64}$")
_STALE_TMP_S = 60.0


def check_address(address: str) -> str:
    """The address, if it is a lowercase sha256 hex digest; ``RecordError`` otherwise."""
    if not isinstance(address, str) or not _ADDRESS.match(address):
        raise RecordError(f"malformed blob address {address!r} (want 64 lowercase hex digits)")
    return address


def address_of(data: bytes) -> str:
    """The content address of ``data``: its sha256 hex digest."""
    return hashlib.sha256(data).hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobFiles:
    """The blob directory of one store: atomic writes, verified reads."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._tmp = root / ".tmp"
        try:
            # Owner only, also when they existed (blobs are screenshots and files).
            for directory in (root, self._tmp):
                directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                directory.chmod(0o700)
        except OSError as e:
            raise RecordError(f"cannot create blob directory {root}: {e}") from e
        self.remove_stale_tmp()

    def path(self, address: str) -> Path:
        """Where the blob with this (well-formed) address lives."""
        check_address(address)
        return self.root / address[:2] / address[2:]

    def write(self, address: str, data: bytes) -> None:
        """Write ``data`` durably under ``address``, its sha256 hex digest (whole or not at all).

        Rewriting an existing blob is harmless: readers see the old file or the new one.
        """
        final = self.path(address)
        tmp = self._tmp / f"{address[:16]}.{os.getpid()}.{secrets.token_hex(4)}"
        try:
            final.parent.mkdir(mode=0o700, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
                os.rename(tmp, final)
            finally:
                os.close(fd)
            _fsync_dir(final.parent)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise RecordError(f"cannot write blob {address}: {e}") from e

    def read(self, address: str) -> bytes | None:
        """The blob's bytes, None if there is no file; ``RecordError`` if they do not hash
        to the address."""
        try:
            data = self.path(address).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise RecordError(f"cannot read blob {address}: {e}") from e
        if address_of(data) != address:
            raise RecordError(f"blob {address} is corrupt (its bytes do not match its address)")
        return data

    def exists(self, address: str) -> bool:
        """Whether the blob's file is present."""
        return self.path(address).is_file()

    def remove_stale_tmp(self) -> int:
        """Remove temporary files left by crashed writers; returns how many."""
        removed = 0
        cutoff = time.time() - _STALE_TMP_S
        for tmp in self._tmp.iterdir():
            try:
                fd = os.open(tmp, os.O_RDONLY)
            except OSError:
                continue
            try:
                if os.fstat(fd).st_mtime > cutoff:
                    continue
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                tmp.unlink()
                removed += 1
            except OSError:
                continue  # locked by a live writer, or gone already
            finally:
                os.close(fd)
        if removed:
            log.info("removed %d stale temporary blob files from %s", removed, self._tmp)
        return removed
