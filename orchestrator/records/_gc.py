"""Garbage collection of records: what ended before a cutoff goes, with its blobs.

What goes, in one write transaction:

* **Runs**: a root task (one no stored task delegated) with its whole tree of subtasks, once
  every task of the tree has ended (succeeded, failed, cancelled) before the cutoff, none is
  pinned, and none belongs to a live agent (starting, idle or busy); with every event of
  those tasks (steps, messages, model calls, files).
* **Agents** fired or failed whose last event (or hire) is older than the cutoff, with no
  task left and no agent left that they hired; with their events.
* **Events** that name neither an agent nor a task, older than the cutoff.
* **Blobs** (screenshots, files) no remaining event names. Blobs are shared by content, so a
  blob named by a newer event stays. A blob touched within ``BLOB_GRACE_S`` stays too: its
  writer may not have stored the event naming it yet (``put_blob`` renews the file's mtime
  under the same lock).

Removed blob files are moved to ``blobs/.gc`` inside the transaction and deleted after it
commits (moved back if it does not); a crash in between leaves them there for the next run,
which restores the ones whose record survived and deletes the rest.

The database file does not shrink: its freed pages are reused by later records (the report
counts them). ``vacuum=True`` rewrites the file to its live size (it takes the write lock for
the time it needs to copy the database).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ..domain import AgentStatus, TaskState
from ._blobs import BlobFiles, check_address

__all__ = ["BLOB_GRACE_S", "Collection", "GcReport", "restore_trash"]

BLOB_GRACE_S = 600.0
"""A blob no event names is kept this long after it was last stored."""

_DONE = tuple(s.value for s in TaskState if s.done)
"""A task's final states (SQL literals, as a tuple's repr); every other state is open."""
_LIVE = tuple(s.value for s in (AgentStatus.STARTING, AgentStatus.IDLE, AgentStatus.BUSY))
_TRASH = ".gc"


class GcReport(BaseModel):
    """What a garbage collection removed (or, dry, would remove)."""

    model_config = ConfigDict(frozen=True)

    cutoff: float
    """Records that ended before this time (unix seconds) were eligible."""
    dry_run: bool = False
    tasks: int = 0
    """Tasks removed (whole runs: a root task and its subtasks)."""
    agents: int = 0
    events: dict[str, int] = Field(default_factory=dict)
    """Events removed, by kind (step, model, message, file, task, agent, log)."""
    blobs: int = 0
    """Screenshots and files removed."""
    blob_bytes: int = 0
    """Their size on disk."""
    db_bytes: int = 0
    """Database pages freed (reused by later records; the file shrinks only on vacuum)."""
    vacuumed_bytes: int = 0
    """How much smaller the database file (with its journal) got by vacuuming."""

    @property
    def bytes(self) -> int:
        """The space reclaimed: blob files and freed database pages."""
        return self.blob_bytes + self.db_bytes

    def summary(self) -> str:
        """One line: rows per kind and bytes."""
        by_kind = ", ".join(f"{k} {n}" for k, n in sorted(self.events.items()))
        parts = [
            f"{self.tasks} task(s)",
            f"{self.agents} agent(s)",
            f"{sum(self.events.values())} event(s)" + (f" ({by_kind})" if by_kind else ""),
            f"{self.blobs} blob(s) ({_size(self.blob_bytes)})",
        ]
        freed = f"database pages {_size(self.db_bytes)}"
        if self.vacuumed_bytes:
            freed += f", database file {_size(self.vacuumed_bytes)} smaller"
        verb = "would remove" if self.dry_run else "removed"
        return f"{verb} {', '.join(parts)}; {_size(self.bytes)} reclaimed ({freed})"


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"


def _free_bytes(db: sqlite3.Connection) -> int:
    pages = db.execute("PRAGMA freelist_count").fetchone()[0]
    size = db.execute("PRAGMA page_size").fetchone()[0]
    return int(pages) * int(size)


_TEMP = (
    "CREATE TEMP TABLE IF NOT EXISTS gc_tasks (id TEXT PRIMARY KEY) WITHOUT ROWID",
    "CREATE TEMP TABLE IF NOT EXISTS gc_agents (id TEXT PRIMARY KEY) WITHOUT ROWID",
    "CREATE TEMP TABLE IF NOT EXISTS gc_events (seq INTEGER PRIMARY KEY)",
    "CREATE TEMP TABLE IF NOT EXISTS gc_blobs (address TEXT PRIMARY KEY, size INTEGER)",
)

_RUNS = f"""
WITH RECURSIVE tree (root, id) AS (
    SELECT id, id FROM tasks
    WHERE parent_task_id IS NULL OR parent_task_id NOT IN (SELECT id FROM tasks)
    UNION
    SELECT tree.root, t.id FROM tasks t JOIN tree ON t.parent_task_id = tree.id
),
runs (root) AS (
    SELECT tree.root FROM tree
    JOIN tasks t ON t.id = tree.id
    LEFT JOIN agents a ON a.id = t.agent_id
    GROUP BY tree.root
    HAVING SUM(t.state NOT IN {_DONE}) = 0
       AND MAX(t.updated_at) < :cutoff
       AND SUM(COALESCE(a.status IN {_LIVE}, 0)) = 0
       AND SUM(t.id IN (SELECT task_id FROM pins)) = 0
)
INSERT OR IGNORE INTO gc_tasks (id) SELECT tree.id FROM tree WHERE tree.root IN runs
"""

_AGENTS = f"""
INSERT OR IGNORE INTO gc_agents (id)
SELECT a.id FROM agents a
WHERE a.status NOT IN {_LIVE}
  AND a.id NOT IN (SELECT id FROM gc_agents)
  AND COALESCE((SELECT MAX(e.at) FROM events e WHERE e.agent_id = a.id), a.created_at) < :cutoff
  AND a.created_at < :cutoff
  AND NOT EXISTS (
      SELECT 1 FROM tasks t WHERE t.agent_id = a.id AND t.id NOT IN (SELECT id FROM gc_tasks))
  AND NOT EXISTS (
      SELECT 1 FROM agents c WHERE c.parent_id = a.id AND c.id NOT IN (SELECT id FROM gc_agents))
"""

_EVENTS = (
    "INSERT OR IGNORE INTO gc_events (seq) SELECT e.seq FROM gc_tasks g"
    " JOIN events e ON e.task_id = g.id",
    "INSERT OR IGNORE INTO gc_events (seq) SELECT e.seq FROM gc_agents g"
    " JOIN events e ON e.agent_id = g.id",
    "INSERT OR IGNORE INTO gc_events (seq) SELECT seq FROM events"
    " WHERE agent_id IS NULL AND task_id IS NULL AND at < :cutoff",
)

_UNREFERENCED = """
SELECT b.address, b.size FROM blobs b
WHERE NOT EXISTS (
    SELECT 1 FROM event_blobs r WHERE r.address = b.address
      AND r.seq NOT IN (SELECT seq FROM gc_events))
"""


def _trash(blobs: BlobFiles) -> Path:
    path = blobs.root / _TRASH
    path.mkdir(exist_ok=True)
    return path


def restore_trash(db: sqlite3.Connection, blobs: BlobFiles) -> None:
    """Blob files a crashed collection left in the trash: back in place if their record
    survived, else deleted. Call inside the write transaction."""
    for path in _trash(blobs).iterdir():
        try:
            address = check_address(path.name)
        except Exception:  # noqa: BLE001 - not ours: leave it
            continue
        if db.execute("SELECT 1 FROM blobs WHERE address = ?", (address,)).fetchone():
            target = blobs.path(address)
            target.parent.mkdir(exist_ok=True)
            os.rename(path, target)
        else:
            path.unlink(missing_ok=True)


class Collection:
    """One collection inside the caller's open write transaction on ``db``.

    ``plan()`` finds what goes and deletes its rows (the blob files move to the trash unless
    ``dry_run``); then the caller commits (rolls back, for a dry run) and calls ``done()``,
    or rolls back on an error and calls ``undo()``.
    """

    def __init__(self, db: sqlite3.Connection, blobs: BlobFiles, *, dry_run: bool) -> None:
        self._db = db
        self._blobs = blobs
        self._dry_run = dry_run
        self._moved: list[tuple[Path, Path]] = []
        self._free_before = 0

    def plan(self, cutoff: float, now: float) -> GcReport:
        db = self._db
        self._free_before = _free_bytes(db)
        for statement in _TEMP:
            db.execute(statement)
        for table in ("gc_tasks", "gc_agents", "gc_events", "gc_blobs"):
            db.execute(f"DELETE FROM temp.{table}")
        grace = now - BLOB_GRACE_S  # against the file's mtime: renewed when stored again
        params = {"cutoff": cutoff}
        if not self._dry_run:
            restore_trash(db, self._blobs)
        db.execute(_RUNS, params)
        while db.execute(_AGENTS, params).rowcount > 0:
            pass  # an agent goes once the agents it hired are gone: bottom-up
        for statement in _EVENTS:
            db.execute(statement, params)
        events = db.execute(
            "SELECT e.kind, COUNT(*) FROM gc_events g JOIN events e ON e.seq = g.seq"
            " GROUP BY e.kind"
        ).fetchall()
        blob_bytes = 0
        for address, size in db.execute(_UNREFERENCED, params).fetchall():
            path = self._blobs.path(address)
            try:
                st: os.stat_result | None = path.stat()
            except FileNotFoundError:
                st = None
            if st is not None and st.st_mtime >= grace:
                continue  # stored again just now: an event naming it may be on its way
            blob_bytes += st.st_size if st is not None else 0
            db.execute("INSERT INTO gc_blobs (address, size) VALUES (?, ?)", (address, size))
            if st is not None and not self._dry_run:
                held = _trash(self._blobs) / address
                os.rename(path, held)
                self._moved.append((held, path))
        report = GcReport(
            cutoff=cutoff,
            dry_run=self._dry_run,
            tasks=db.execute("SELECT COUNT(*) FROM gc_tasks").fetchone()[0],
            agents=db.execute("SELECT COUNT(*) FROM gc_agents").fetchone()[0],
            events={str(k): int(n) for k, n in events},
            blobs=db.execute("SELECT COUNT(*) FROM gc_blobs").fetchone()[0],
            blob_bytes=blob_bytes,
        )
        for statement in (
            "DELETE FROM event_blobs WHERE seq IN (SELECT seq FROM gc_events)",
            "DELETE FROM events WHERE seq IN (SELECT seq FROM gc_events)",
            "DELETE FROM tasks WHERE id IN (SELECT id FROM gc_tasks)",
            "DELETE FROM pins WHERE task_id IN (SELECT id FROM gc_tasks)",
            "DELETE FROM agents WHERE id IN (SELECT id FROM gc_agents)",
            "DELETE FROM blobs WHERE address IN (SELECT address FROM gc_blobs)",
        ):
            db.execute(statement)
        freed = _free_bytes(db) - self._free_before
        return report.model_copy(update={"db_bytes": max(freed, 0)})

    def done(self) -> None:
        """After the commit: delete the blob files for good."""
        for held, _ in self._moved:
            held.unlink(missing_ok=True)
        self._moved.clear()

    def undo(self) -> None:
        """After a rollback: the records are back, so are their files."""
        for held, path in self._moved:
            with contextlib.suppress(FileNotFoundError):  # another collection restored it
                os.rename(held, path)
        self._moved.clear()
