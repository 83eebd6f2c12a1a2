"""Tenants in the SQLite records: API keys (digests only), quotas, and the quota checks.

Each check runs inside the write transaction of the insert it guards (``SQLiteStore``
``admit_agent`` / ``admit_task``), so two concurrent creates cannot both take a tenant's
last slot: SQLite's immediate transactions serialise them, across processes too. Counts
leave out the record being admitted, so a retried call (the recorder's are retried) is not
refused by its own first attempt.
"""

from __future__ import annotations

import re
import sqlite3
import time
from typing import Any

from ..domain import OPEN_TASK_STATES, AgentInfo, AgentStatus, TaskInfo
from ..errors import QuotaExceededError, RecordError
from ..tenants import ApiKey, Quotas
from ._sessions import end_sessions_of_key

__all__ = [
    "active_keys",
    "check_agent",
    "check_task",
    "insert_key",
    "list_keys",
    "quotas_of",
    "revoke_key",
    "set_quotas",
]

_HEX = re.compile(r"^[0-9a-f]{64}$")
_LIVE = tuple(s.value for s in (AgentStatus.STARTING, AgentStatus.IDLE, AgentStatus.BUSY))
_OPEN = tuple(s.value for s in OPEN_TASK_STATES)
"""Every state of a task that has not ended (waiting for a person too): what the
``max_running_tasks`` quota counts."""
_KEY_COLUMNS = "id, tenant, name, created_at, revoked_at"


def _marks(values: tuple[str, ...]) -> str:
    return ", ".join("?" * len(values))


# ---------------------------------------------------------------------- quotas


def quotas_of(db: sqlite3.Connection, tenant: str) -> Quotas:
    row = db.execute(
        "SELECT max_agents, max_desktops, max_running_tasks FROM tenants WHERE tenant = ?",
        (tenant,),
    ).fetchone()
    if row is None:
        return Quotas()
    return Quotas(max_agents=row[0], max_desktops=row[1], max_running_tasks=row[2])


def set_quotas(db: sqlite3.Connection, tenant: str, update: Quotas) -> Quotas:
    """Replace the quotas ``update`` sets explicitly (None: unlimited); returns them all."""
    merged = quotas_of(db, tenant).merged(update)
    db.execute(
        "INSERT INTO tenants (tenant, max_agents, max_desktops, max_running_tasks, updated_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant) DO UPDATE SET"
        " max_agents = excluded.max_agents, max_desktops = excluded.max_desktops,"
        " max_running_tasks = excluded.max_running_tasks, updated_at = excluded.updated_at",
        (tenant, merged.max_agents, merged.max_desktops, merged.max_running_tasks, time.time()),
    )
    return merged


def _refuse(tenant: str, count: int, limit: int, what: str, field: str, hint: str) -> None:
    raise QuotaExceededError(
        f"quota exceeded: tenant {tenant!r} has {count} {what} and its quota is {limit} "
        f"({field}); {hint}"
    )


def check_agent(db: sqlite3.Connection, info: AgentInfo) -> None:
    """``QuotaExceededError`` unless the tenant may have one more live agent like ``info``."""
    quotas = quotas_of(db, info.tenant)
    live = (
        f"SELECT COUNT(*) FROM agents WHERE tenant = ? AND status IN ({_marks(_LIVE)}) AND id != ?"
    )
    params: list[Any] = [info.tenant, *_LIVE, info.id]
    if info.parent_id is None and quotas.max_agents is not None:
        count = int(db.execute(live + " AND parent_id IS NULL", params).fetchone()[0])
        if count >= quotas.max_agents:
            _refuse(
                info.tenant,
                count,
                quotas.max_agents,
                "live top-level agents",
                "max_agents",
                "fire one first, or ask the operator for more",
            )
    if quotas.max_desktops is not None:
        count = int(db.execute(live, params).fetchone()[0])
        if count >= quotas.max_desktops:
            _refuse(
                info.tenant,
                count,
                quotas.max_desktops,
                "live desktops (agents at any level, hired ones included)",
                "max_desktops",
                "fire an agent first, or ask the operator for more",
            )


def check_task(db: sqlite3.Connection, info: TaskInfo) -> None:
    """``QuotaExceededError`` unless the tenant of the task's agent may start one more task.

    Only tasks given from outside count (no ``parent_task_id``): the subtasks an agent
    delegates are part of their parent's run (and take desktops, which have their own quota).
    """
    if info.parent_task_id is not None:
        return
    row = db.execute("SELECT tenant FROM agents WHERE id = ?", (info.agent_id,)).fetchone()
    if row is None:
        return
    tenant = str(row[0])
    limit = quotas_of(db, tenant).max_running_tasks
    if limit is None:
        return
    count = int(
        db.execute(
            "SELECT COUNT(*) FROM tasks t JOIN agents a ON a.id = t.agent_id"
            f" WHERE a.tenant = ? AND t.parent_task_id IS NULL AND t.state IN ({_marks(_OPEN)})"
            " AND t.id != ?",
            (tenant, *_OPEN, info.id),
        ).fetchone()[0]
    )
    if count >= limit:
        _refuse(
            tenant,
            count,
            limit,
            "tasks pending or running",
            "max_running_tasks",
            "wait for one to end or cancel one, or ask the operator for more",
        )


# ---------------------------------------------------------------------- keys


def _key(row: Any) -> ApiKey:
    return ApiKey(id=row[0], tenant=row[1], name=row[2], created_at=row[3], revoked_at=row[4])


def insert_key(db: sqlite3.Connection, key: ApiKey, digest: str) -> ApiKey:
    """Store a key's record and digest; the stored one when its id is known (a retry)."""
    if not _HEX.match(digest):
        raise RecordError("an API key digest is 64 lower-case hex digits (sha256)")
    found = db.execute(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = ?", (key.id,)).fetchone()
    if found is not None:
        return _key(found)
    if db.execute("SELECT 1 FROM api_keys WHERE digest = ?", (digest,)).fetchone():
        raise RecordError("this API key is stored already (under another id)")
    db.execute(
        f"INSERT INTO api_keys ({_KEY_COLUMNS}, digest) VALUES (?, ?, ?, ?, ?, ?)",
        (key.id, key.tenant, key.name, key.created_at, key.revoked_at, digest),
    )
    return key


def list_keys(
    db: sqlite3.Connection, tenant: str | None = None, *, include_revoked: bool = True
) -> list[ApiKey]:
    sql = f"SELECT {_KEY_COLUMNS} FROM api_keys"
    where, params = [], []
    if tenant is not None:
        where.append("tenant = ?")
        params.append(tenant)
    if not include_revoked:
        where.append("revoked_at IS NULL")
    if where:
        sql += " WHERE " + " AND ".join(where)
    return [_key(r) for r in db.execute(sql + " ORDER BY created_at, id", params)]


def revoke_key(db: sqlite3.Connection, key_id: str) -> ApiKey | None:
    """Revoke a key (again: no change), ending the console sessions opened with it; the
    key's record, or None when there is none."""
    db.execute(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?",
        (time.time(), key_id),
    )
    found = db.execute("SELECT digest FROM api_keys WHERE id = ?", (key_id,)).fetchone()
    if found is not None:
        end_sessions_of_key(db, str(found[0]))
    row = db.execute(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = ?", (key_id,)).fetchone()
    return _key(row) if row is not None else None


def active_keys(db: sqlite3.Connection) -> list[tuple[str, str]]:
    """``(tenant, sha256 hex digest)`` of every key not revoked."""
    rows = db.execute("SELECT tenant, digest FROM api_keys WHERE revoked_at IS NULL")
    return [(str(t), str(d)) for t, d in rows]
