"""The SQL of the record store's rows: agents, tasks and events written inside a caller's
transaction, filters, and counts. Functions of a connection, so that a store method and a
check that must share its transaction (a quota's, say) use the same statements."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from enum import StrEnum
from typing import Any, TypeVar

from ..domain import AgentInfo, AgentStatus, Event, EventKind, TaskInfo, TaskState
from ..errors import RecordError
from ._blobs import check_address

__all__ = [
    "STATES",
    "Where",
    "check_range",
    "check_state_event",
    "count_agents",
    "count_tasks",
    "encode_event",
    "insert_event",
    "upsert_agent",
    "upsert_task",
    "enum_values",
]

E = TypeVar("E", bound=StrEnum)


# The brain's API key is a secret: it is never written to the records.
_AGENT_EXCLUDE: Any = {"spec": {"brain": {"api_key"}}, "usage": True, "subtree_usage": True}
_TASK_EXCLUDE: Any = {"usage", "subtree_usage"}
"""Usage is computed from the events when read (``_usage``), never stored."""


def enum_values(kind: type[E], value: E | Iterable[E] | None) -> list[str] | None:
    """A filter on one enum column: None (any), or the allowed values."""
    if value is None:
        return None
    items = [value] if isinstance(value, str) else list(value)
    return [kind(v).value for v in items]


def check_range(name: str, value: int, low: int, high: int | None = None) -> int:
    """``value``, once it is an integer in ``low..high``; ``RecordError`` otherwise."""
    if not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise RecordError(f"{name} must be an integer {bound}, not {value!r}")
    return value


def upsert_agent(db: sqlite3.Connection, info: AgentInfo) -> None:
    """Insert the agent or replace the stored one (without its brain's API key)."""
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


STATES = frozenset(s.value for s in TaskState)

_DONE_STATES = ", ".join(f"'{s.value}'" for s in TaskState if s.done)
"""A task's final states, as SQL literals: a stored task in one of them is never changed."""


def upsert_task(db: sqlite3.Connection, info: TaskInfo) -> bool:
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
            info.model_dump_json(exclude=_TASK_EXCLUDE),
        ),
    )
    return bool(cursor.rowcount)


def check_state_event(info: TaskInfo, event: Event) -> None:
    """``event`` must announce ``info``'s state: a ``task`` event of that task and state."""
    said = event.data.get("state")
    if event.kind != EventKind.TASK or event.task_id != info.id or said != info.state.value:
        raise RecordError(
            f"task {info.id} is {info.state.value}: its state event must be a task event of "
            f"it saying so, not a {event.kind.value} event of {event.task_id} saying {said!r}"
        )


def encode_event(event: Event) -> str:
    """The event's stored form (checked: new, and naming well-formed blob addresses)."""
    if event.seq is not None:
        raise RecordError(f"event {event.seq} is stored already; append a new Event")
    for address in event.blobs:
        check_address(address)
    try:
        return event.model_dump_json(exclude={"seq"})
    except ValueError as e:
        raise RecordError(f"cannot encode an event: {e}") from e


def insert_event(db: sqlite3.Connection, event: Event, payload: str) -> int:
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


def count_agents(db: sqlite3.Connection, tenant: str | None) -> dict[AgentStatus, int]:
    where = " WHERE tenant = ?" if tenant is not None else ""
    params = (tenant,) if tenant is not None else ()
    sql = f"SELECT status, COUNT(*) FROM agents{where} GROUP BY status"
    return _tally(AgentStatus, db.execute(sql, params))


def count_tasks(db: sqlite3.Connection, tenant: str | None) -> dict[TaskState, int]:
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


class Where:
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
