"""The SQLite schema and its migrations.

Each record is stored whole as JSON (``payload``, the pydantic model) beside the columns that
are queried, which are indexed. ``schema_version`` holds one row per applied migration;
``migrate`` applies the missing ones in order, each in its own transaction, so several
processes may open a new database at once. To change the schema, append a migration to
``MIGRATIONS``; never edit one that has shipped.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

from ..errors import RecordError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate"]

Migration = Callable[[sqlite3.Connection], None]


def _v1(db: sqlite3.Connection) -> None:
    """Agents, tasks, events and blobs."""
    for statement in (
        """CREATE TABLE agents (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            parent_id TEXT,
            path TEXT NOT NULL,
            status TEXT NOT NULL,
            created_at REAL NOT NULL,
            payload TEXT NOT NULL
        )""",
        "CREATE INDEX agents_tenant ON agents (tenant, created_at)",
        "CREATE INDEX agents_parent ON agents (parent_id, created_at)",
        "CREATE INDEX agents_path ON agents (path)",
        """CREATE TABLE tasks (
            id TEXT PRIMARY KEY,
            agent_id TEXT NOT NULL,
            parent_task_id TEXT,
            state TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            payload TEXT NOT NULL
        )""",
        "CREATE INDEX tasks_agent ON tasks (agent_id, created_at)",
        "CREATE INDEX tasks_parent ON tasks (parent_task_id, created_at)",
        "CREATE INDEX tasks_state ON tasks (state, created_at)",
        "CREATE INDEX tasks_created ON tasks (created_at)",
        # AUTOINCREMENT: a seq is never reused, even after the newest event is deleted.
        """CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            agent_id TEXT,
            task_id TEXT,
            at REAL NOT NULL,
            payload TEXT NOT NULL
        )""",
        "CREATE INDEX events_task ON events (task_id, seq)",
        "CREATE INDEX events_agent ON events (agent_id, seq)",
        """CREATE TABLE blobs (
            address TEXT PRIMARY KEY,
            size INTEGER NOT NULL,
            media_type TEXT NOT NULL,
            created_at REAL NOT NULL
        ) WITHOUT ROWID""",
    ):
        db.execute(statement)


def _v2(db: sqlite3.Connection) -> None:
    """Event ids, so that a retried append stores an event once."""
    db.execute("ALTER TABLE events ADD COLUMN event_id TEXT")
    db.execute("CREATE UNIQUE INDEX events_id ON events (event_id)")


def _v3(db: sqlite3.Connection) -> None:
    """Garbage collection: pinned runs, and which events name which blobs (a blob is removed
    only once no event names it)."""
    db.execute(
        "CREATE TABLE pins (task_id TEXT PRIMARY KEY, pinned_at REAL NOT NULL) WITHOUT ROWID"
    )
    db.execute(
        "CREATE TABLE event_blobs (address TEXT NOT NULL, seq INTEGER NOT NULL,"
        " PRIMARY KEY (address, seq)) WITHOUT ROWID"
    )
    db.execute("CREATE INDEX event_blobs_seq ON event_blobs (seq)")
    db.execute(
        "INSERT OR IGNORE INTO event_blobs (address, seq)"
        " SELECT j.value, e.seq FROM events e, json_each(e.payload, '$.blobs') j"
    )


def _v4(db: sqlite3.Connection) -> None:
    """Tenants: API keys (sha256 digests only) and per-tenant quotas (NULL: unlimited)."""
    db.execute(
        """CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            digest TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            created_at REAL NOT NULL,
            revoked_at REAL
        )"""
    )
    db.execute("CREATE INDEX api_keys_tenant ON api_keys (tenant, created_at)")
    db.execute(
        """CREATE TABLE tenants (
            tenant TEXT PRIMARY KEY,
            max_agents INTEGER,
            max_desktops INTEGER,
            max_running_tasks INTEGER,
            updated_at REAL NOT NULL
        ) WITHOUT ROWID"""
    )


def _v5(db: sqlite3.Connection) -> None:
    """Console sessions (the digest of the cookie's token only) and the cluster's secrets
    (the key that signs desktop tickets)."""
    db.execute(
        """CREATE TABLE sessions (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            key_digest TEXT NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            ended_at REAL
        ) WITHOUT ROWID"""
    )
    db.execute("CREATE INDEX sessions_key ON sessions (key_digest)")
    db.execute(
        """CREATE TABLE secrets (
            name TEXT PRIMARY KEY,
            value BLOB NOT NULL,
            created_at REAL NOT NULL
        ) WITHOUT ROWID"""
    )


def _v6(db: sqlite3.Connection) -> None:
    """Index events by time, per agent: the console's tenant pages and replay ask for a
    tenant's events at or before a moment (``agent_id IN (its agents) AND at <= ?``); by
    ``(agent_id, seq)`` that reads every event each of its agents ever had, by
    ``(agent_id, at)`` only those before the moment. (A bare ``events (at)`` index is never
    chosen for these queries: SQLite prefers the agent's.)"""
    db.execute("CREATE INDEX events_agent_at ON events (agent_id, at)")


MIGRATIONS: tuple[Migration, ...] = (_v1, _v2, _v3, _v4, _v5, _v6)
"""Migration ``i`` brings the schema from version ``i`` to ``i + 1``."""

SCHEMA_VERSION = len(MIGRATIONS)
"""The version this code reads and writes."""


def _version(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
    return int(row[0])


def migrate(db: sqlite3.Connection, migrations: tuple[Migration, ...] = MIGRATIONS) -> int:
    """Bring the database to the newest version; returns the version it was at.

    ``db`` must be in autocommit mode (``isolation_level=None``). Raises ``RecordError``
    when the database is newer than this code.
    """
    db.execute(
        "CREATE TABLE IF NOT EXISTS schema_version"
        " (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
    )
    found = _version(db)
    while True:
        db.execute("BEGIN IMMEDIATE")  # waits for other writers (busy timeout)
        try:
            current = _version(db)  # another process may have migrated meanwhile
            if current > len(migrations):
                raise RecordError(
                    f"the records database is at schema version {current}, newer than this "
                    f"code's {len(migrations)}: upgrade the orchestrator"
                )
            if current == len(migrations):
                db.execute("COMMIT")
                return found
            migrations[current](db)
            db.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                (current + 1, time.time()),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
