"""The record store on SQLite: one ``records.sqlite3`` file, blobs beside it.

The database (file, connections, transactions) is ``_db.Database``; the SQL of agents,
tasks and events is in ``_rows``, of tenants in ``_tenants``, of garbage collection in
``_gc``. Durability: see ``_db``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..domain import AgentInfo, AgentStatus, Event, EventKind, TaskInfo, TaskState
from ..errors import RecordError
from ..tenants import ApiKey, Quotas
from ..usage import Prices, Usage, configured_prices
from . import _sessions as sessions
from . import _tenants as tenants
from ._blobs import address_of, check_address
from ._db import DB_NAME, Database
from ._gc import Collection, GcReport
from ._rows import (
    STATES,
    Where,
    check_range,
    check_state_event,
    count_agents,
    count_tasks,
    encode_event,
    enum_values,
    insert_event,
    upsert_agent,
    upsert_task,
)
from ._sessions import ConsoleSession
from ._store import MAX_LIMIT, RecordStore, StoreStats
from ._usage import agent_usage, task_usage

__all__ = ["DB_NAME", "SQLiteStore"]


class SQLiteStore(Database, RecordStore):
    """Records in ``data_dir/records.sqlite3``, blobs in ``data_dir/blobs/``.

    Several stores (in several processes) may open the same directory.

    Example:
        >>> import tempfile, pathlib
        >>> store = SQLiteStore(pathlib.Path(tempfile.mkdtemp()))
        >>> store.get_blob(store.put_blob(b"hello", "text/plain"))
        b'hello'
        >>> store.close()
    """

    # ------------------------------------------------------------------ agents

    def put_agent(self, info: AgentInfo) -> None:
        with self._transaction(f"store agent {info.id}") as db:
            upsert_agent(db, info)

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
        offset: int = 0,
    ) -> list[AgentInfo]:
        check_range("limit", limit, 1, MAX_LIMIT)
        check_range("offset", offset, 0)
        where = Where()
        with self._errors("list agents"):
            where.eq("tenant", tenant)
            where.eq("parent_id", parent_id)
            if top_level:
                where.clauses.append("parent_id IS NULL")
            where.among("status", enum_values(AgentStatus, status))
            sql = (
                f"SELECT payload FROM agents{where.sql()} ORDER BY created_at, id LIMIT ? OFFSET ?"
            )
            rows = self._rows("list agents", sql, [*where.params, limit, offset])
            return [AgentInfo.model_validate_json(row[0]) for row in rows]

    # ------------------------------------------------------------------ tasks

    def put_task(self, info: TaskInfo, event: Event | None = None) -> TaskInfo:
        payload = None
        if event is not None:
            check_state_event(info, event)
            payload = encode_event(event)
        with self._transaction(f"store task {info.id}") as db:
            row = db.execute("SELECT state, payload FROM tasks WHERE id = ?", (info.id,)).fetchone()
            if row is not None and TaskState(row[0]).done:
                return TaskInfo.model_validate_json(row[1])  # its end stands
            if event is None and row is not None and row[0] != info.state.value:
                raise RecordError(
                    f"task {info.id} is {row[0]}: its state changes to {info.state.value} only "
                    "together with the event that announces it"
                )
            upsert_task(db, info)
            if event is not None and payload is not None:
                insert_event(db, event, payload)
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
        agent_status: AgentStatus | Iterable[AgentStatus] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[TaskInfo]:
        check_range("limit", limit, 1, MAX_LIMIT)
        check_range("offset", offset, 0)
        where = Where()
        with self._errors("list tasks"):
            where.eq("t.agent_id", agent_id)
            where.eq("a.tenant", tenant)
            where.eq("t.parent_task_id", parent_task_id)
            where.among("t.state", enum_values(TaskState, state))
            where.among("a.status", enum_values(AgentStatus, agent_status))
            # A task's tenant and status are its agent's: join only when filtering on them.
            by_agent = tenant is not None or agent_status is not None
            join = " JOIN agents a ON a.id = t.agent_id" if by_agent else ""
            sql = (
                f"SELECT t.payload FROM tasks t{join}{where.sql()}"
                " ORDER BY t.created_at DESC, t.id DESC LIMIT ? OFFSET ?"
            )
            rows = self._rows("list tasks", sql, [*where.params, limit, offset])
            return [TaskInfo.model_validate_json(row[0]) for row in rows]

    # ------------------------------------------------------------------ usage

    def task_usage(
        self, task_ids: Iterable[str], prices: Prices | None = None
    ) -> dict[str, tuple[Usage, Usage]]:
        ids = list(dict.fromkeys(task_ids))
        prices = configured_prices() if prices is None else prices
        with self._errors("sum the usage of tasks"):
            db = self._reader()
            db.execute("BEGIN")  # one snapshot of the records
            try:
                return task_usage(db, ids, prices)
            finally:
                db.execute("COMMIT")

    def agent_usage(
        self, agent_id: str, prices: Prices | None = None
    ) -> tuple[Usage, Usage] | None:
        prices = configured_prices() if prices is None else prices
        with self._errors(f"sum the usage of agent {agent_id}"):
            db = self._reader()
            db.execute("BEGIN")
            try:
                return agent_usage(db, agent_id, prices)
            finally:
                db.execute("COMMIT")

    # ------------------------------------------------------------------ counts

    def agent_counts(self, tenant: str | None = None) -> dict[AgentStatus, int]:
        with self._errors("count agents"):
            return count_agents(self._reader(), tenant)

    def task_counts(self, tenant: str | None = None) -> dict[TaskState, int]:
        with self._errors("count tasks"):
            return count_tasks(self._reader(), tenant)

    def stats(self, tenant: str | None = None) -> StoreStats:
        """Both counts from one snapshot of the records (one read transaction)."""
        with self._errors("count agents and tasks"):
            db = self._reader()
            db.execute("BEGIN")
            try:
                return StoreStats(agents=count_agents(db, tenant), tasks=count_tasks(db, tenant))
            finally:
                db.execute("COMMIT")

    # ------------------------------------------------------------------ events

    def append_event(self, event: Event) -> Event:
        payload = encode_event(event)
        state = event.data.get("state")
        announces = event.kind == EventKind.TASK and isinstance(state, str) and state in STATES
        with self._transaction("append an event") as db:
            if (
                announces
                and db.execute("SELECT 1 FROM tasks WHERE id = ?", (event.task_id,)).fetchone()
            ):
                raise RecordError(
                    f"the state of task {event.task_id} is announced only with the state "
                    "itself: put_task(task, event)"
                )
            seq = insert_event(db, event, payload)
        return event.model_copy(update={"seq": seq})

    def events(
        self,
        task_id: str | None = None,
        agent_id: str | None = None,
        after_seq: int = 0,
        limit: int = 100,
        kinds: Iterable[EventKind] | None = None,
        tenant: str | None = None,
        before_at: float | None = None,
        blob: str | None = None,
    ) -> list[Event]:
        check_range("after_seq", after_seq, 0)
        check_range("limit", limit, 1, MAX_LIMIT)
        where = Where()
        with self._errors("read events"):
            where.clauses.append("seq > ?")
            where.params.append(after_seq)
            where.eq("task_id", task_id)
            where.eq("agent_id", agent_id)
            where.among("kind", enum_values(EventKind, kinds))
            if tenant is not None:
                where.clauses.append("agent_id IN (SELECT id FROM agents WHERE tenant = ?)")
                where.params.append(tenant)
            if before_at is not None:
                where.clauses.append("at <= ?")
                where.params.append(float(before_at))
            if blob is not None:
                where.clauses.append("seq IN (SELECT seq FROM event_blobs WHERE address = ?)")
                where.params.append(blob)
            # the latest ones before a moment: newest first, then put back in seq order
            order = "seq DESC" if before_at is not None else "seq"
            sql = f"SELECT seq, payload FROM events{where.sql()} ORDER BY {order} LIMIT ?"
            rows = self._rows("read events", sql, [*where.params, limit])
            if before_at is not None:
                rows = rows[::-1]
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

    # ------------------------------------------------------------------ tenants

    def admit_agent(self, info: AgentInfo) -> None:
        with self._transaction(f"admit agent {info.id}") as db:
            tenants.check_agent(db, info)
            upsert_agent(db, info)

    def admit_task(self, info: TaskInfo) -> None:
        with self._transaction(f"admit task {info.id}") as db:
            tenants.check_task(db, info)
            upsert_task(db, info)

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

    # ------------------------------------------------------------------ console sessions

    def add_session(self, session: ConsoleSession) -> ConsoleSession:
        with self._transaction("store a console session") as db:
            return sessions.insert_session(db, session)

    def session(self, session_id: str) -> ConsoleSession | None:
        with self._errors("read a console session"):
            return sessions.get_session(self._reader(), session_id)

    def end_session(self, session_id: str) -> ConsoleSession | None:
        with self._transaction("end a console session") as db:
            return sessions.end_session(db, session_id)

    def cluster_secret(self, name: str) -> bytes:
        with self._transaction("read a cluster secret") as db:
            return sessions.secret(db, name)

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.data_dir)!r})"
