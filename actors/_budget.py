"""Budgets that cascade down the tree: a task's ``TaskSpec.budget`` limits what its whole
subtree (the task and every subtask below it) may spend.

Every runner checks, after each model call and each step it records, the budgets of its own
task and of each ancestor that has one, against the records' rollup of that task's subtree
(``RecordStore.task_usage``: summed from the committed events, so the check sees the spend
of every actor of the subtree, and a dead actor's spend stays counted; a read that fails, e.g.
while the recorder restarts, skips that check and is logged: the next one counts it all). The
first budget
found exceeded, from the top of the tree down, ends that budgeted task's subtree:

- the budgeted task is ``cancelled`` with the reason (``budget exceeded: 12,400 tokens of
  10,000 (subtree of task-...)``) in its record and its ``task`` event, after a ``log``
  event on its timeline with the usage that exceeded the budget;
- every open subtask below it is cancelled with the same reason (cancelling a task cancels
  its subtasks, each through its own agent);
- the runner that found it stops too: when the budgeted task is its own, it ends cancelled
  with the reason at once (``BudgetExceeded``); otherwise it asks the budgeted task's agent
  to cancel it (``stop``), which cancels the checking task with the rest of the subtree.

A cancelled subtask is not retried (``run_plan``). Waiting for a person spends nothing: a
budget is checked when something is spent.

Example (``tests/unit/test_budget_runner.py`` runs it on the desktop stand-in)::

    watch = BudgetWatch(records, stop=stop_through_agent(records))
    runner = TaskRunner(task, ..., budget=watch)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestrator.domain import AgentInfo, Event, EventKind, TaskInfo
from orchestrator.usage import Usage

from ._task_ports import TaskFailed

__all__ = [
    "BudgetExceeded",
    "BudgetRecords",
    "BudgetWatch",
    "RecorderReads",
    "Stop",
    "agent_budget_watch",
    "as_budget_records",
    "stop_through_agent",
]

log = logging.getLogger(__name__)

MAX_DEPTH = 64
"""Most ancestors looked up for budgets (a guard against a cycle in damaged records)."""

STOP_TIMEOUT_S = 300.0
"""Longest wait for a budgeted task's agent to cancel its subtree."""


class BudgetExceeded(TaskFailed):
    """A budget of the task's subtree (its own or an ancestor's) is exceeded: the task ends
    ``cancelled`` with the message as the reason."""


class BudgetRecords(Protocol):
    """What the budget check reads from the records (and writes: one ``log`` event)."""

    async def get_task(self, task_id: str) -> TaskInfo | None: ...

    async def task_usage(self, task_ids: list[str]) -> dict[str, tuple[Usage, Usage]]: ...

    async def append_event(self, event: Event, blob: tuple[bytes, str] | None = None) -> None: ...


Stop = Callable[[TaskInfo, str], Awaitable[None]]
"""Cancel ``task``'s subtree with the reason; returns once it is cancelled (or cannot be)."""


@dataclass
class BudgetWatch:
    """The budget check of one runner (see the module docstring).

    Example:
        >>> watch = BudgetWatch(records=None, stop=None)   # no records: checks nothing
    """

    records: BudgetRecords | None
    stop: Stop | None = None
    """How to cancel an ancestor's subtree (None: the checking task only ends itself)."""
    _budgeted: list[TaskInfo] | None = field(default=None, init=False, repr=False)
    """The task and its ancestors that have a budget, the top-most first (looked up once)."""

    async def _chain(self, task: TaskInfo) -> list[TaskInfo]:
        if self._budgeted is None:
            chain: list[TaskInfo] = [task]
            parent = task.parent_task_id
            while parent is not None and self.records is not None and len(chain) < MAX_DEPTH:
                up = await self.records.get_task(parent)
                if up is None:
                    break
                chain.append(up)
                parent = up.parent_task_id
            self._budgeted = [t for t in reversed(chain) if t.spec.budget is not None]
        return self._budgeted

    async def check(self, task: TaskInfo) -> None:
        """After a model call or a step of ``task``: ``BudgetExceeded`` (once the exceeded
        subtree is being cancelled) when a budget of its own or of an ancestor is exceeded."""
        if self.records is None:
            return
        try:
            chain = await self._chain(task)
            spent = await self.records.task_usage([t.id for t in chain]) if chain else {}
        except Exception as e:  # noqa: BLE001 - e.g. the recorder restarting: next check counts
            log.warning("task %s: budget check skipped, usage unreadable: %r", task.id, e)
            return
        for budgeted in chain:
            budget = budgeted.spec.budget
            if budget is None or budgeted.id not in spent:
                continue
            usage = spent[budgeted.id][1]
            over = budget.exceeded(usage)
            if over is None:
                continue
            reason = f"budget exceeded: {over} (subtree of {budgeted.id})"
            log.info("task %s: %s", task.id, reason)
            await self.records.append_event(
                Event(
                    kind=EventKind.LOG,
                    agent_id=budgeted.agent_id,
                    task_id=budgeted.id,
                    data={
                        "msg": reason,
                        "budget": budget.model_dump(exclude_none=True),
                        "subtree_usage": usage.model_dump(),
                        "noticed_by": task.id,
                    },
                )
            )
            if budgeted.id != task.id and self.stop is not None:
                await self.stop(budgeted, reason)  # cancels this task too, on the way down
            raise BudgetExceeded(reason)


class _AgentRecords(BudgetRecords, Protocol):
    async def get_agent(self, agent_id: str) -> AgentInfo | None: ...


def stop_through_agent(records: _AgentRecords) -> Stop:
    """A ``Stop`` for runners in agent actors: the budgeted task's agent (looked up by its
    recorded actor) cancels it, and through it its subtree, with the reason."""
    from ray.exceptions import RayError

    from ._names import actor_of

    async def stop(task: TaskInfo, reason: str) -> None:
        agent = await records.get_agent(task.agent_id)
        handle = None if agent is None else await asyncio.to_thread(actor_of, agent)
        if handle is None:
            log.warning("budget of %s: its agent is gone; nothing to cancel there", task.id)
            return
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await handle.cancel_task.remote(task.id, reason)
        except (RayError, TimeoutError) as e:
            log.warning("budget of %s: its agent did not cancel it: %s", task.id, e)

    return stop


def as_budget_records(records: Any) -> BudgetRecords | None:
    """``records`` if it can serve the budget check (reads tasks and usage), else None."""
    if all(hasattr(records, m) for m in ("get_task", "task_usage", "append_event")):
        checked: BudgetRecords = records
        return checked
    return None


class RecorderReads:
    """The budget check's reads over the recorder actor (``RecorderRecords`` has them)."""

    _recorder: Any

    async def get_task(self, task_id: str) -> TaskInfo | None:
        found: TaskInfo | None = await self._recorder.get_task.remote(task_id)
        return found

    async def get_agent(self, agent_id: str) -> AgentInfo | None:
        found: AgentInfo | None = await self._recorder.get_agent.remote(agent_id)
        return found

    async def task_usage(self, task_ids: list[str]) -> dict[str, tuple[Usage, Usage]]:
        spent: dict[str, tuple[Usage, Usage]] = await self._recorder.task_usage.remote(task_ids)
        return spent


def agent_budget_watch(records: Any) -> BudgetWatch:
    """The budget check of a runner in an agent actor over ``records`` (``RecorderRecords``):
    an exceeded ancestor's subtree is cancelled through that ancestor's agent."""
    readable = as_budget_records(records)
    stop = stop_through_agent(records) if readable and hasattr(records, "get_agent") else None
    return BudgetWatch(readable, stop=stop)
