"""The record store on SQLite: one ``records.sqlite3`` file, blobs beside it.

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
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from ..domain import AgentInfo, AgentStatus, Event, EventKind, TaskInfo, TaskState
from ..errors import RecordError
from ..tenants import ApiKey, Quotas
from . import _tenants as tenants
from ._blobs import BlobFiles, address_of, check_address
from ._gc import Collection, GcReport
from ._schema import migrate
from ._store import MAX_LIMIT, RecordStore, StoreStats

__all__ = ["DB_NAME", "SQLiteStore"]

DB_NAME = "records.sqlite3"
"""The database's file name in the data directory."""

E = TypeVar("E", bound=StrEnum)


def _private_file(path: Path, *, create: bool) -> None:
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


# The brain's API key is a secret: it is never written to the records.
_AGENT_EXCLUDE: Any = {"spec": {"brain": {"api_key"}}}


def _values(kind: type[E], value: E | Iterable[E] | None) -> list[str] | None:
    """A filter on one enum column: None (any), or the allowed values."""
    if value is None:
        return None
    items = [value] if isinstance(value, str) else list(value)
    return [kind(v).value for v in items]


def _check_range(name: str, value: int, low: int, high: int | None = None) -> int:
    if not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise RecordError(f"{name} must be an integer {bound}, not {value!r}")
    return value


def _upsert_agent(db: sqlite3.Connection, info: AgentInfo) -> None:
    db.execute(
        "INSERT INTO agents (id, tenant, parent_id, path, status, created_at, payload)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
        " tenant = excluded.tenant, parent_id = excluded.parent_id,"
        " path = excluded.path, status = excluded.status,"
        " created_at = excluded.created_at, payload = excluded.payload",
        (
            info.id,
            info.tenant,
            info.parent_id,
            info.path,
            info.status.value,
            info.created_at,
            info.model_dump_json(exclude=_AGENT_EXCLUDE),
        ),
    )


_STATES = frozenset(s.value for s in TaskState)

_DONE_STATES = ", ".join(f"'{s.value}'" for s in TaskState if s.done)
"""A task's final states, as SQL literals: a stored task in one of them is never changed."""


def _upsert_task(db: sqlite3.Connection, info: TaskInfo) -> bool:
    """Insert or replace the task, unless the stored one has ended; True if written."""
    cursor = db.execute(
        "INSERT INTO tasks"
        " (id, agent_id, parent_task_id, state, created_at, updated_at, payload)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
        " agent_id = excluded.agent_id, parent_task_id = excluded.parent_task_id,"
        " state = excluded.state, created_at = excluded.created_at,"
        " updated_at = excluded.updated_at, payload = excluded.payload"
        f" WHERE tasks.state NOT IN ({_DONE_STATES})",
        (
            info.id,
            info.agent_id,
            info.parent_task_id,
            info.state.value,
            info.created_at,
            info.updated_at,
            info.model_dump_json(),
        ),
    )
    return bool(cursor.rowcount)


def _check_state_event(info: TaskInfo, event: Event) -> None:
    """``event`` must announce ``info``'s state: a ``task`` event of that task and state."""
    said = event.data.get("state")
    if event.kind != EventKind.TASK or event.task_id != info.id or said != info.state.value:
        raise RecordError(
            f"task {info.id} is {info.state.value}: its state event must be a task event of "
            f"it saying so, not a {event.kind.value} event of {event.task_id} saying {said!r}"
        )


def _encode_event(event: Event) -> str:
    """The event's stored form (checked: new, and naming well-formed blob addresses)."""
    if event.seq is not None:
        raise RecordError(f"event {event.seq} is stored already; append a new Event")
    for address in event.blobs:
        check_address(address)
    try:
        return event.model_dump_json(exclude={"seq"})
    except ValueError as e:
        raise RecordError(f"cannot encode an event: {e}") from e


def _insert_event(db: sqlite3.Connection, event: Event, payload: str) -> int:
    """Store a new event (``payload``: its ``_encode_event``) in the open transaction;
    returns its seq (the first one's, when an append is retried)."""
    wanted = sorted(set(event.blobs))
    if wanted:
        marks = ", ".join("?" * len(wanted))
        held = {
            row[0]
            for row in db.execute(f"SELECT address FROM blobs WHERE address IN ({marks})", wanted)
        }
        if missing := [a for a in wanted if a not in held]:
            raise RecordError(f"event names blobs the store does not hold: {missing}")
    again = db.execute("SELECT seq FROM events WHERE event_id = ?", (event.id,)).fetchone()
    if again is not None:  # a retried append: the first one was committed
        return int(again[0])
    cursor = db.execute(
        "INSERT INTO events (event_id, kind, agent_id, task_id, at, payload)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (event.id, event.kind.value, event.agent_id, event.task_id, event.at, payload),
    )
    seq = int(cursor.lastrowid or 0)
    db.executemany(  # what keeps the blobs from garbage collection
        "INSERT OR IGNORE INTO event_blobs (address, seq) VALUES (?, ?)",
        [(address, seq) for address in wanted],
    )
    return seq


def _tally(kind: type[E], rows: Iterable[Any]) -> dict[E, int]:
    """``(value, count)`` rows as a count for every member of ``kind`` (0 when absent); a
    value this version does not know (written by a newer one) is left out."""
    counts = dict.fromkeys(kind, 0)
    known = {m.value: m for m in kind}
    for value, count in rows:
        if value in known:
            counts[known[value]] += int(count)
    return counts


def _count_agents(db: sqlite3.Connection, tenant: str | None) -> dict[AgentStatus, int]:
    where = " WHERE tenant = ?" if tenant is not None else ""
    params = (tenant,) if tenant is not None else ()
    sql = f"SELECT status, COUNT(*) FROM agents{where} GROUP BY status"
    return _tally(AgentStatus, db.execute(sql, params))


def _count_tasks(db: sqlite3.Connection, tenant: str | None) -> dict[TaskState, int]:
    params: tuple[str, ...] = ()
    if tenant is None:
        sql = "SELECT state, COUNT(*) FROM tasks GROUP BY state"
    else:  # a task's tenant is its agent's
        sql = (
            "SELECT t.state, COUNT(*) FROM tasks t JOIN agents a ON a.id = t.agent_id"
            " WHERE a.tenant = ? GROUP BY t.state"
        )
        params = (tenant,)
    return _tally(TaskState, db.execute(sql, params))


class _Where:
    """WHERE clauses and their parameters, built up filter by filter."""

    def __init__(self) -> None:
        self.clauses: list[str] = []
        self.params: list[Any] = []

    def eq(self, column: str, value: object | None) -> None:
        if value is not None:
            self.clauses.append(f"{column} = ?")
            self.params.append(value)

    def among(self, column: str, values: list[str] | None) -> None:
        if values is not None:
            self.clauses.append(f"{column} IN ({', '.join('?' * len(values))})")
            self.params.extend(values)

    def sql(self) -> str:
        return f" WHERE {' AND '.join(self.clauses)}" if self.clauses else ""


class SQLiteStore(RecordStore):
    """Records in ``data_dir/records.sqlite3``, blobs in ``data_dir/blobs/``.

    Several stores (in several processes) may open the same directory.

    Example:
        >>> import tempfile, pathlib
        >>> store = SQLiteStore(pathlib.Path(tempfile.mkdtemp()))
        >>> store.get_blob(store.put_blob(b"hello", "text/plain"))
        b'hello'
        >>> store.close()
    """

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
                _private_file(self.path, create=True)
                for side in ("-wal", "-shm"):  # left by an older version, maybe 0644
                    _private_file(self.path.with_name(DB_NAME + side), create=False)
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

    # ------------------------------------------------------------------ agents

    def put_agent(self, info: AgentInfo) -> None:
        with self._transaction(f"store agent {info.id}") as db:
            _upsert_agent(db, info)

    def get_agent(self, agent_id: str) -> AgentInfo | None:
        rows = self._rows("read an agent", "SELECT payload FROM agents WHERE id = ?", [agent_id])
        with self._errors(f"decode agent {agent_id}"):
            return AgentInfo.model_validate_json(rows[0][0]) if rows else None

    def list_agents(
        self,
        tenant: str | None = None,
        parent_id: str | None = None,
        *,
        top_level: bool = False,
        status: AgentStatus | Iterable[AgentStatus] | None = None,
        limit: int = MAX_LIMIT,
    ) -> list[AgentInfo]:
        _check_range("limit", limit, 1, MAX_LIMIT)
        where = _Where()
        with self._errors("list agents"):
            where.eq("tenant", tenant)
            where.eq("parent_id", parent_id)
            if top_level:
                where.clauses.append("parent_id IS NULL")
            where.among("status", _values(AgentStatus, status))
            sql = f"SELECT payload FROM agents{where.sql()} ORDER BY created_at, id LIMIT ?"
            rows = self._rows("list agents", sql, [*where.params, limit])
            return [AgentInfo.model_validate_json(row[0]) for row in rows]

    # ------------------------------------------------------------------ tasks

    def put_task(self, info: TaskInfo, event: Event | None = None) -> TaskInfo:
        payload = None
        if event is not None:
            _check_state_event(info, event)
            payload = _encode_event(event)
        with self._transaction(f"store task {info.id}") as db:
            row = db.execute("SELECT state, payload FROM tasks WHERE id = ?", (info.id,)).fetchone()
            if row is not None and TaskState(row[0]).done:
                return TaskInfo.model_validate_json(row[1])  # its end stands
            if event is None and row is not None and row[0] != info.state.value:
                raise RecordError(
                    f"task {info.id} is {row[0]}: its state changes to {info.state.value} only "
                    "together with the event that announces it"
                )
            _upsert_task(db, info)
            if event is not None and payload is not None:
                _insert_event(db, event, payload)
        return info

    def get_task(self, task_id: str) -> TaskInfo | None:
        rows = self._rows("read a task", "SELECT payload FROM tasks WHERE id = ?", [task_id])
        with self._errors(f"decode task {task_id}"):
            return TaskInfo.model_validate_json(rows[0][0]) if rows else None

    def list_tasks(
        self,
        agent_id: str | None = None,
        tenant: str | None = None,
        state: TaskState | Iterable[TaskState] | None = None,
        *,
        parent_task_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[TaskInfo]:
        _check_range("limit", limit, 1, MAX_LIMIT)
        _check_range("offset", offset, 0)
        where = _Where()
        with self._errors("list tasks"):
            where.eq("t.agent_id", agent_id)
            where.eq("a.tenant", tenant)
            where.eq("t.parent_task_id", parent_task_id)
            where.among("t.state", _values(TaskState, state))
            # A task's tenant is its agent's: join only when filtering on it.
            join = " JOIN agents a ON a.id = t.agent_id" if tenant is not None else ""
            sql = (
                f"SELECT t.payload FROM tasks t{join}{where.sql()}"
                " ORDER BY t.created_at DESC, t.id DESC LIMIT ? OFFSET ?"
            )
            rows = self._rows("list tasks", sql, [*where.params, limit, offset])
            return [TaskInfo.model_validate_json(row[0]) for row in rows]

    # ------------------------------------------------------------------ counts

    def agent_counts(self, tenant: str | None = None) -> dict[AgentStatus, int]:
        with self._errors("count agents"):
            return _count_agents(self._reader(), tenant)

    def task_counts(self, tenant: str | None = None) -> dict[TaskState, int]:
        with self._errors("count tasks"):
            return _count_tasks(self._reader(), tenant)

    def stats(self, tenant: str | None = None) -> StoreStats:
        """Both counts from one snapshot of the records (one read transaction)."""
        with self._errors("count agents and tasks"):
            db = self._reader()
            db.execute("BEGIN")
            try:
                return StoreStats(agents=_count_agents(db, tenant), tasks=_count_tasks(db, tenant))
            finally:
                db.execute("COMMIT")

    # ------------------------------------------------------------------ events

    def append_event(self, event: Event) -> Event:
        payload = _encode_event(event)
        state = event.data.get("state")
        announces = event.kind == EventKind.TASK and isinstance(state, str) and state in _STATES
        with self._transaction("append an event") as db:
            if (
                announces
                and db.execute("SELECT 1 FROM tasks WHERE id = ?", (event.task_id,)).fetchone()
            ):
                raise RecordError(
                    f"the state of task {event.task_id} is announced only with the state "
                    "itself: put_task(task, event)"
                )
            seq = _insert_event(db, event, payload)
        return event.model_copy(update={"seq": seq})

    def events(
        self,
        task_id: str | None = None,
        agent_id: str | None = None,
        after_seq: int = 0,
        limit: int = 100,
        kinds: Iterable[EventKind] | None = None,
    ) -> list[Event]:
        _check_range("after_seq", after_seq, 0)
        _check_range("limit", limit, 1, MAX_LIMIT)
        where = _Where()
        with self._errors("read events"):
            where.clauses.append("seq > ?")
            where.params.append(after_seq)
            where.eq("task_id", task_id)
            where.eq("agent_id", agent_id)
            where.among("kind", _values(EventKind, kinds))
            sql = f"SELECT seq, payload FROM events{where.sql()} ORDER BY seq LIMIT ?"
            rows = self._rows("read events", sql, [*where.params, limit])
            return [
                Event.model_validate_json(payload).model_copy(update={"seq": seq})
                for seq, payload in rows
            ]

    # ------------------------------------------------------------------ blobs

    def put_blob(self, data: bytes, media_type: str) -> str:
        if not isinstance(data, bytes):
            raise RecordError(f"a blob is bytes, not {type(data).__name__}")
        if not isinstance(media_type, str) or not 0 < len(media_type) <= 255:
            raise RecordError(f"a blob needs a media type (1 to 255 characters): {media_type!r}")
        address = address_of(data)
        if not self._reuse_blob(address):
            # The file is durable before the row that makes it known is committed.
            with self._errors(f"write blob {address}"):
                self._blobs.write(address, data)
            with self._transaction(f"store blob {address}") as db:
                db.execute(
                    "INSERT INTO blobs (address, size, media_type, created_at)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (address) DO NOTHING",
                    (address, len(data), media_type, time.time()),
                )
        return address

    def _reuse_blob(self, address: str) -> bool:
        """Whether the blob is stored whole already; if so its file's mtime is renewed, under
        the write lock, so that garbage collection (which takes the same lock and leaves blobs
        touched within ``BLOB_GRACE_S`` alone) cannot remove it before an event names it.

        A transaction that changes nothing writes nothing: no fsync.
        """
        with self._transaction(f"check blob {address}") as db:
            if db.execute("SELECT 1 FROM blobs WHERE address = ?", (address,)).fetchone():
                try:
                    os.utime(self._blobs.path(address))
                    return True
                except FileNotFoundError:
                    return False  # the record without its file: write it again
        return False

    def _blob_row(self, address: str) -> tuple[Any, ...] | None:
        rows = self._rows(
            "read a blob's record", "SELECT media_type FROM blobs WHERE address = ?", [address]
        )
        return tuple(rows[0]) if rows else None

    def get_blob(self, address: str) -> bytes:
        check_address(address)
        data = self._blobs.read(address) if self._blob_row(address) else None
        if data is None:
            raise RecordError(f"no blob {address}")
        return data

    def blob_media_type(self, address: str) -> str | None:
        try:
            check_address(address)
        except RecordError:
            return None
        row = self._blob_row(address)
        return str(row[0]) if row else None

    def blob_path(self, address: str) -> Path | None:
        try:
            path = self._blobs.path(address)
        except RecordError:
            return None
        return path if self._blob_row(address) and path.is_file() else None

    # ------------------------------------------------------------------ retention

    def pin_task(self, task_id: str, pinned: bool = True) -> bool:
        with self._transaction(f"pin task {task_id}") as db:
            if db.execute("SELECT 1 FROM tasks WHERE id = ?", (task_id,)).fetchone() is None:
                return False
            if pinned:
                db.execute(
                    "INSERT OR IGNORE INTO pins (task_id, pinned_at) VALUES (?, ?)",
                    (task_id, time.time()),
                )
            else:
                db.execute("DELETE FROM pins WHERE task_id = ?", (task_id,))
            return True

    def is_pinned(self, task_id: str) -> bool:
        return bool(self._rows("read a pin", "SELECT 1 FROM pins WHERE task_id = ?", [task_id]))

    def collect_garbage(
        self,
        older_than_s: float,
        *,
        dry_run: bool = False,
        vacuum: bool = False,
        now: float | None = None,
    ) -> GcReport:
        if not isinstance(older_than_s, (int, float)) or older_than_s < 0:
            raise RecordError(f"older_than_s must be a number >= 0, not {older_than_s!r}")
        now = time.time() if now is None else now
        with self._errors("collect garbage"), self._write_lock:
            if self._closed:
                raise RecordError("the record store is closed")
            db = self._writer
            gc = Collection(db, self._blobs, dry_run=dry_run)
            db.execute("BEGIN IMMEDIATE")
            try:
                report = gc.plan(now - older_than_s, now)
                db.execute("ROLLBACK" if dry_run else "COMMIT")
            except BaseException:
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                gc.undo()
                raise
            gc.done()
            if dry_run:
                return report
            if vacuum:
                before = self._file_bytes()
                db.execute("VACUUM")
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                report = report.model_copy(
                    update={"vacuumed_bytes": max(before - self._file_bytes(), 0)}
                )
            else:  # keep the journal small; busy readers just make it a no-op
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return report

    def _file_bytes(self) -> int:
        wal = self.path.with_name(self.path.name + "-wal")
        return self.path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)

    # ------------------------------------------------------------------ tenants

    def admit_agent(self, info: AgentInfo) -> None:
        with self._transaction(f"admit agent {info.id}") as db:
            tenants.check_agent(db, info)
            _upsert_agent(db, info)

    def admit_task(self, info: TaskInfo) -> None:
        with self._transaction(f"admit task {info.id}") as db:
            tenants.check_task(db, info)
            _upsert_task(db, info)

    def quotas(self, tenant: str) -> Quotas:
        with self._errors("read quotas"):
            return tenants.quotas_of(self._reader(), tenant)

    def set_quotas(self, tenant: str, update: Quotas) -> Quotas:
        with self._transaction(f"set the quotas of {tenant}") as db:
            return tenants.set_quotas(db, tenant, update)

    def add_api_key(self, key: ApiKey, digest: str) -> ApiKey:
        with self._transaction(f"store API key {key.id}") as db:
            return tenants.insert_key(db, key, digest)

    def api_keys(self, tenant: str | None = None, *, include_revoked: bool = True) -> list[ApiKey]:
        with self._errors("list API keys"):
            return tenants.list_keys(self._reader(), tenant, include_revoked=include_revoked)

    def revoke_api_key(self, key_id: str) -> ApiKey | None:
        with self._transaction(f"revoke API key {key_id}") as db:
            return tenants.revoke_key(db, key_id)

    def active_api_keys(self) -> list[tuple[str, str]]:
        with self._errors("read API keys"):
            return tenants.active_keys(self._reader())

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        with self._write_lock, self._conns_lock:
            self._closed = True
            for db in self._conns:
                with contextlib.suppress(sqlite3.Error):
                    db.close()
            self._conns.clear()

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.data_dir)!r})"
