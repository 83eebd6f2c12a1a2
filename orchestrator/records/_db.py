"""The SQLite database under the record store: its file, connections and transactions.

Durability: WAL journal with ``synchronous=FULL``, so a commit is fsynced before the call
returns. Writes take an in-process lock and an immediate transaction (which also orders
them against writers in other processes); reads use one connection per thread, so they run
concurrently with writes and with each other.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import RecordError
from ._blobs import BlobFiles
from ._schema import migrate

__all__ = ["DB_NAME", "Database"]

DB_NAME = "records.sqlite3"
"""The database's file name in the data directory."""


def private_file(path: Path, *, create: bool) -> None:
    """Make ``path`` readable by its owner only (0600), creating it so if ``create``; never
    through a symlink. The database is made this way before SQLite opens it, since SQLite
    gives its ``-wal`` and ``-shm`` files the database's mode (the umask's 0644 left the
    records readable by every user when the data directory existed already)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:
        if create:
            raise
        return
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


class Database:
    """``data_dir/records.sqlite3`` opened (created and migrated, unless ``readonly``), with
    blobs in ``data_dir/blobs/``: the plumbing ``SQLiteStore`` is built on."""

    def __init__(
        self, data_dir: Path, *, busy_timeout_s: float = 15.0, readonly: bool = False
    ) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / DB_NAME
        self._timeout = busy_timeout_s
        self._closed = False
        self._readonly = readonly
        self._write_lock = threading.Lock()
        self._conns_lock = threading.Lock()
        self._conns: list[sqlite3.Connection] = []
        self._local = threading.local()
        if readonly:
            # Another process's records, read only (its writer made and migrated them):
            # agents, tasks and events can be read; blobs and writes cannot.
            if not self.path.is_file():
                raise RecordError(f"no records at {self.path}")
            with self._errors("open the records"):
                self._reader()
            return
        try:
            with self._errors("open the records"):
                self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                private_file(self.path, create=True)
                for side in ("-wal", "-shm"):  # left by an older version, maybe 0644
                    private_file(self.path.with_name(DB_NAME + side), create=False)
                self._blobs = BlobFiles(self.data_dir / "blobs")
                self._writer = self._connect()
                self._while_busy(self._set_wal)
                self._while_busy(lambda: migrate(self._writer))
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ plumbing

    def _connect(self) -> sqlite3.Connection:
        target = f"{self.path.as_uri()}?mode=ro" if self._readonly else str(self.path)
        db = sqlite3.connect(
            target,
            timeout=self._timeout,
            isolation_level=None,
            check_same_thread=False,
            uri=self._readonly,
        )
        with self._conns_lock:
            self._conns.append(db)
        if not self._readonly:
            db.execute("PRAGMA synchronous=FULL")
        return db

    def _set_wal(self) -> None:
        mode = self._writer.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise RecordError(f"{self.path}: cannot use a WAL journal (got {mode!r})")

    def _while_busy(self, step: Callable[[], object]) -> None:
        """Run ``step``, again while the database is locked, until the busy timeout.

        Switching a new database to WAL while another process opens it fails at once with
        "database is locked" (SQLite's busy handler is not consulted there).
        """
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                step()
                return
            except sqlite3.OperationalError as e:
                locked = "locked" in str(e) or "busy" in str(e)
                if not locked or time.monotonic() > deadline:
                    raise
            time.sleep(random.uniform(0.005, 0.05))

    def _reader(self) -> sqlite3.Connection:
        """This thread's read connection."""
        if self._closed:
            raise RecordError("the record store is closed")
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._connect()
            db.execute("PRAGMA query_only=ON")
        return db

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Translate database, file and (de)serialisation failures into ``RecordError``."""
        try:
            yield
        except RecordError:
            raise
        except (sqlite3.Error, OSError, ValueError) as e:
            raise RecordError(f"cannot {doing} ({self.path}): {e}") from e

    @contextlib.contextmanager
    def _transaction(self, doing: str) -> Iterator[sqlite3.Connection]:
        """A write transaction, committed durably on leaving (rolled back on error)."""
        with self._errors(doing), self._write_lock:
            if self._closed:
                raise RecordError("the record store is closed")
            db = self._writer
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                raise

    def _rows(self, doing: str, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        with self._errors(doing):
            return self._reader().execute(sql, tuple(params)).fetchall()

    def _file_bytes(self) -> int:
        wal = self.path.with_name(self.path.name + "-wal")
        return self.path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)

    def close(self) -> None:
        """Release connections and files; any later call raises ``RecordError``."""
        with self._write_lock, self._conns_lock:
            self._closed = True
            for db in self._conns:
                with contextlib.suppress(sqlite3.Error):
                    db.close()
            self._conns.clear()
