"""What tasks spent, summed from their events: the usage each ``model`` event lists (one
entry per model call), the ``step`` events (one per action carried out; a step a person
refused says ``carried_out: false`` and is not counted) and the ``task``
events (the time between a ``running`` state and the next state is running time).

Nothing is stored besides the events themselves: the events that carry a spend are written
before the spend counts, so a usage read after a crash is whatever was committed, and a
task's usage can never disagree with its timeline. A subtree is the task and every task
whose ``parent_task_id`` leads to it; an agent's tasks are those given to it (and, for its
subtree, to every agent it hired, recursively).
"""

from __future__ import annotations

import sqlite3
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..domain import EventKind, TaskState
from ..usage import Prices, Usage

__all__ = ["agent_usage", "task_usage"]

_CHUNK = 500
"""Ids bound in one ``IN (...)`` (well under SQLite's variable limit)."""


@dataclass
class _Tally:
    """One task's spend, raw: tokens by model, steps, running seconds."""

    by_model: dict[str | None, list[int]] = field(default_factory=dict)
    """model -> [calls, input tokens, output tokens, cached input tokens]."""
    steps: int = 0
    running_s: float = 0.0

    def usage(self, prices: Prices) -> Usage:
        total = Usage(steps=self.steps, wall_s=round(self.running_s, 3))
        for model, (calls, inp, out, cached) in self.by_model.items():
            total = total + Usage.of_call(
                model, inp, out, prices, cached_input_tokens=cached, calls=calls
            )
        return total


def _chunks(ids: Sequence[str]) -> Iterable[list[str]]:
    for i in range(0, len(ids), _CHUNK):
        yield list(ids[i : i + _CHUNK])


def _tallies(db: sqlite3.Connection, ids: Sequence[str], now: float) -> dict[str, _Tally]:
    """The raw spend of each task in ``ids``, from its events."""
    tallies: dict[str, _Tally] = defaultdict(_Tally)
    for chunk in _chunks(ids):
        marks = ", ".join("?" * len(chunk))
        for task_id, model, calls, inp, out, cached in db.execute(
            "SELECT e.task_id, json_extract(j.value, '$.model'), COUNT(*),"
            " SUM(COALESCE(json_extract(j.value, '$.input_tokens'), 0)),"
            " SUM(COALESCE(json_extract(j.value, '$.output_tokens'), 0)),"
            " SUM(COALESCE(json_extract(j.value, '$.cached_input_tokens'), 0))"
            " FROM events e, json_each(e.payload, '$.data.usage') j"
            f" WHERE e.kind = ? AND e.task_id IN ({marks}) GROUP BY 1, 2",
            [EventKind.MODEL.value, *chunk],
        ):
            tallies[task_id].by_model[model] = [int(calls), int(inp), int(out), int(cached)]
        for task_id, steps in db.execute(
            f"SELECT task_id, COUNT(*) FROM events WHERE kind = ? AND task_id IN ({marks})"
            " AND COALESCE(json_extract(payload, '$.data.carried_out'), 1) != 0"
            " GROUP BY task_id",
            [EventKind.STEP.value, *chunk],
        ):
            tallies[task_id].steps = int(steps)
        since: dict[str, float] = {}
        for task_id, at, state in db.execute(
            "SELECT task_id, at, json_extract(payload, '$.data.state') FROM events"
            f" WHERE kind = ? AND task_id IN ({marks}) ORDER BY seq",
            [EventKind.TASK.value, *chunk],
        ):
            if not isinstance(state, str):
                continue
            started = since.pop(task_id, None)
            if started is not None:
                tallies[task_id].running_s += max(float(at) - started, 0.0)
            if state == TaskState.RUNNING.value:
                since[task_id] = float(at)
        for task_id, started in since.items():  # running now
            tallies[task_id].running_s += max(now - started, 0.0)
    return tallies


def _subtrees(db: sqlite3.Connection, roots: Sequence[str]) -> dict[str, list[str]]:
    """Each root's subtree: the root and every task below it, recursively."""
    below: dict[str, list[str]] = {r: [] for r in roots}
    for chunk in _chunks(list(dict.fromkeys(roots))):
        marks = ", ".join("?" * len(chunk))
        rows = db.execute(
            "WITH RECURSIVE sub(root, id) AS ("
            f" SELECT id, id FROM tasks WHERE id IN ({marks})"
            " UNION SELECT sub.root, t.id FROM tasks t JOIN sub ON t.parent_task_id = sub.id)"
            " SELECT root, id FROM sub",
            chunk,
        )
        for root, task_id in rows:
            below[root].append(task_id)
    return below


def task_usage(
    db: sqlite3.Connection, task_ids: Sequence[str], prices: Prices, now: float | None = None
) -> dict[str, tuple[Usage, Usage]]:
    """``{task id: (its own usage, its subtree's)}`` for each stored task of ``task_ids``."""
    now = time.time() if now is None else now
    subtrees = _subtrees(db, task_ids)
    every = list(dict.fromkeys(t for ids in subtrees.values() for t in ids))
    tallies = _tallies(db, every, now)
    own = {t: tallies[t].usage(prices) if t in tallies else Usage() for t in every}
    result: dict[str, tuple[Usage, Usage]] = {}
    for root, ids in subtrees.items():
        if not ids:
            continue  # not stored
        total = Usage()
        for t in ids:
            total = total + own[t]
        result[root] = (own[root], total)
    return result


def agent_usage(
    db: sqlite3.Connection, agent_id: str, prices: Prices, now: float | None = None
) -> tuple[Usage, Usage] | None:
    """``(what the agent's tasks spent, what those of its subtree of agents spent)``, or None
    when no such agent is stored."""
    if db.execute("SELECT 1 FROM agents WHERE id = ?", (agent_id,)).fetchone() is None:
        return None
    rows = db.execute(
        "WITH RECURSIVE sub(id) AS (SELECT ? UNION SELECT a.id FROM agents a"
        " JOIN sub ON a.parent_id = sub.id)"
        " SELECT t.id, t.agent_id FROM tasks t WHERE t.agent_id IN (SELECT id FROM sub)",
        (agent_id,),
    ).fetchall()
    tallies = _tallies(db, [r[0] for r in rows], time.time() if now is None else now)
    own, subtree = Usage(), Usage()
    for task_id, owner in rows:
        spent = tallies[task_id].usage(prices) if task_id in tallies else Usage()
        subtree = subtree + spent
        if owner == agent_id:
            own = own + spent
    return own, subtree
