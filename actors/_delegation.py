"""Carrying out a plan: its subtasks in dependency order, in parallel where they can be,
each on a specialist through the ``TaskHost``, with retries on fresh specialists and, for a
subtask with a ``Review``, review rounds (``actors._review``).

A person may pause the delegating task while it waits on its subtasks (``PauseHold``): its
record turns ``paused`` at once and no subtask, retry or review round starts until it is
resumed (the runtime pauses the subtasks already running; a subtask assigned while the
parent is paused is paused on assignment by the host); resumed, it is ``waiting`` again.

Example (the runner's use)::

    results = await run_plan(runner, host, plan, log)   # {subtask id: result}
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from orchestrator.domain import Plan, Subtask, TaskSpec, TaskState

from ._review import review_rounds
from ._task_ports import ParentTask, TaskFailed, TaskHost

__all__ = ["PauseHold", "check_plan", "run_plan"]

Log = Callable[[dict[str, Any]], Awaitable[None]]
"""Puts an entry on the delegating task's timeline."""

Gate = Callable[[], Awaitable[None]]
"""Returns at once unless the delegating task is paused; else once it is resumed."""


async def _open() -> None:
    return None


async def run_plan(
    parent: ParentTask, host: TaskHost, plan: Plan, log: Log, gate: Gate = _open
) -> dict[str, str]:
    """Run every subtask of ``plan`` to success and return their results by subtask id;
    ``TaskFailed`` (naming the first subtask that failed for good) otherwise. Before each
    attempt (and each review round) ``gate`` holds it while the parent is paused.
    Cancelling this cancels the subtasks still running.

    A subtask with a ``review`` counts as succeeded once a reviewer passes it; still failing
    after its last round, that attempt fails with the last feedback and the usual rule
    applies: a retry on a fresh specialist (with review rounds of its own) while
    ``max_attempts`` allows, else the plan fails."""
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
            outputs=list(st.outputs),
        )
        last_error = "not run"
        for attempt in range(1, spec.max_attempts + 1):
            await gate()
            child = await host.run_subtask(parent, st, child_spec, attempt)
            if child.state == TaskState.SUCCEEDED:
                if st.review is None:
                    return child.result or ""
                passed, last_error = await review_rounds(
                    parent, host, st, child_spec, child, log, gate
                )
                if passed is not None:
                    return passed
            elif child.state == TaskState.CANCELLED:
                raise TaskFailed(f"subtask {st.id} was cancelled")
            else:
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


class PauseHold:
    """A pause of a task that waits on its subtasks. The runner gives the wait itself:
    ``wait(entered)`` waits in ``paused`` for a resume (the person-wait timeout applies, the
    deadline stands still), sets ``entered`` once the record says ``paused``, and leaves the
    task ``waiting`` again; ``passed`` is the gate ``run_plan`` waits at.

    Example (the runner's use)::

        hold = PauseHold(lambda entered: runner.wait_paused(entered))
        await hold.take()       # a person's pause: returns once the task is paused
        await hold.passed()     # returns once it is resumed (TaskFailed: nobody came)
    """

    def __init__(self, wait: Callable[[asyncio.Event], Coroutine[Any, Any, Any]]) -> None:
        self._wait = wait
        self._held: asyncio.Task[Any] | None = None

    @property
    def paused(self) -> bool:
        """True from a pause until the resume."""
        return self._held is not None and not self._held.done()

    async def take(self) -> None:
        """Pause (a second pause while paused changes nothing); returns once recorded."""
        if self.paused:
            return
        entered = asyncio.Event()
        held = self._held = asyncio.create_task(self._wait(entered))
        shown = asyncio.ensure_future(entered.wait())
        try:
            await asyncio.wait({held, shown}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            shown.cancel()
        if held.done():
            held.result()  # the pause could not even be recorded: say why

    async def passed(self) -> None:
        """Return at once unless paused; else once resumed (``TaskFailed`` when nobody
        resumed the task in time: it fails)."""
        held = self._held
        if held is not None:
            await asyncio.shield(held)

    async def close(self) -> None:
        """Stop holding: the delegation ended (or was cancelled) meanwhile."""
        held, self._held = self._held, None
        if held is None:
            return
        if not held.done():
            held.cancel()
            await asyncio.gather(held, return_exceptions=True)
        elif not held.cancelled():
            held.exception()  # read: it was already reported, or does not matter any more


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
