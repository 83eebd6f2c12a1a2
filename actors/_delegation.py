"""Carrying out a plan: its subtasks in dependency order, in parallel where they can be,
each on a specialist through the ``TaskHost``, with retries on fresh specialists.

Example (the runner's use)::

    results = await run_plan(runner, host, plan, log)   # {subtask id: result}
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from orchestrator.domain import Plan, Subtask, TaskSpec, TaskState

from ._task_ports import ParentTask, TaskFailed, TaskHost

__all__ = ["check_plan", "run_plan"]

Log = Callable[[dict[str, Any]], Awaitable[None]]
"""Puts an entry on the delegating task's timeline."""


async def run_plan(parent: ParentTask, host: TaskHost, plan: Plan, log: Log) -> dict[str, str]:
    """Run every subtask of ``plan`` to success and return their results by subtask id;
    ``TaskFailed`` (naming the first subtask that failed for good) otherwise. Cancelling
    this cancels the subtasks still running."""
    order = check_plan(plan)
    spec = parent.task.spec
    loop = asyncio.get_running_loop()
    done: dict[str, asyncio.Future[str]] = {st.id: loop.create_future() for st in plan.subtasks}

    async def run_one(st: Subtask) -> str:
        deps = {d: await done[d] for d in st.depends_on}
        desc = st.description
        if deps:
            desc += "\n\nResults of the steps this depends on:\n" + "\n".join(
                f"- {k}: {v}" for k, v in deps.items()
            )
        child_spec = TaskSpec(
            description=desc,
            step_budget=spec.step_budget,
            deadline_s=spec.deadline_s,
            max_attempts=spec.max_attempts,
            inputs=deps,
            script=st.script,
        )
        last_error = "not run"
        for attempt in range(1, spec.max_attempts + 1):
            child = await host.run_subtask(parent, st, child_spec, attempt)
            if child.state == TaskState.SUCCEEDED:
                return child.result or ""
            if child.state == TaskState.CANCELLED:
                raise TaskFailed(f"subtask {st.id} was cancelled")
            last_error = child.error or "failed"
            await log(
                {
                    "subtask": st.id,
                    "attempt": attempt,
                    "error": last_error,
                    "next": "retry on a fresh specialist"
                    if attempt < spec.max_attempts
                    else "give up",
                }
            )
        raise TaskFailed(
            f"subtask {st.id} ({st.role}) failed after {spec.max_attempts} attempt(s): {last_error}"
        )

    async def settle(st: Subtask) -> None:
        try:
            done[st.id].set_result(await run_one(st))
        except BaseException as e:
            done[st.id].set_exception(e)
            raise

    try:
        async with asyncio.TaskGroup() as tg:
            for st in order:
                tg.create_task(settle(st))
    except BaseExceptionGroup as group:
        raise _first_cause(group) from group
    finally:
        for f in done.values():  # a dependency that failed: its dependants never read it
            if f.done() and not f.cancelled():
                f.exception()
    return {k: f.result() for k, f in done.items()}


def check_plan(plan: Plan) -> list[Subtask]:
    """Validate the plan's DAG and return its subtasks in a dependency order."""
    ids = [st.id for st in plan.subtasks]
    if len(set(ids)) != len(ids):
        raise TaskFailed(f"the plan repeats subtask ids: {ids}")
    by_id = {st.id: st for st in plan.subtasks}
    for st in plan.subtasks:
        missing = [d for d in st.depends_on if d not in by_id]
        if missing:
            raise TaskFailed(f"subtask {st.id} depends on unknown subtasks {missing}")
    order: list[Subtask] = []
    state: dict[str, int] = {}

    def visit(st: Subtask, trail: list[str]) -> None:
        if state.get(st.id) == 2:
            return
        if state.get(st.id) == 1:
            raise TaskFailed(f"the plan has a dependency cycle: {' -> '.join([*trail, st.id])}")
        state[st.id] = 1
        for d in st.depends_on:
            visit(by_id[d], [*trail, st.id])
        state[st.id] = 2
        order.append(st)

    for st in plan.subtasks:
        visit(st, [])
    return order


def _first_cause(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to report for a failed plan: a subtask's own failure before anything else."""
    leaves: list[BaseException] = []

    def walk(e: BaseException) -> None:
        if isinstance(e, BaseExceptionGroup):
            for sub in e.exceptions:
                walk(sub)
        else:
            leaves.append(e)

    walk(group)
    for e in leaves:
        if isinstance(e, TaskFailed):
            return e
    return leaves[0]
