"""How an agent carries out one task: triage, then act on its own desktop or delegate.

- Do: a step loop (observe, decide, act, record) with a step budget; every step's action,
  result and screenshot are recorded before the next step starts.
- Delegate: a plan of subtasks (a DAG); each goes to an idle child with the role or to a new
  hire; independent ones run in parallel; a failed subtask is retried on a fresh specialist
  up to ``max_attempts``; then the agent may check the results on its own desktop.
The whole task runs under its deadline; cancelling it cancels the subtasks in the subtree.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from orchestrator import actions as a
from orchestrator.brains import Brain, BrainContext, Observation, StepRecord
from orchestrator.domain import (
    EventKind,
    Plan,
    StepDecision,
    Subtask,
    TaskInfo,
    TaskSpec,
    TaskState,
)
from orchestrator.errors import BrainError, OrchestratorError

from ._outputs import collect_outputs

if TYPE_CHECKING:
    from orchestrator.desktop import Desktop

__all__ = ["ChildRunner", "TaskFailed", "TaskRunner"]

log = logging.getLogger(__name__)

T = TypeVar("T")


SETTLE_QUIET_S = 0.03
"""After GUI actions, the screen must be unchanged this long before the next observation."""
SETTLE_TIMEOUT_S = 2.0
"""...but the agent does not wait longer than this for it."""

OUTPUTS_TIMEOUT_S = 300.0
"""Longest time spent copying a task's outputs off its desktop."""

_NO_SCREEN_CHANGE = (a.Shell, a.Wait, a.CursorPosition, a.TakeScreenshot)


class TaskFailed(Exception):
    """The task cannot succeed; the message is the reason shown to users and parents."""


class ChildRunner(Protocol):
    """What the runner needs from the agent to delegate: run a subtask on some specialist."""

    async def run_subtask(
        self, parent: TaskInfo, subtask: Subtask, spec: TaskSpec, attempt: int
    ) -> TaskInfo: ...


Record = Callable[..., Awaitable[None]]


@dataclass
class TaskRunner:
    """Runs one task for an agent to its end state."""

    task: TaskInfo
    role: str
    agent_path: str
    desktop: Desktop
    brain: Brain
    children: ChildRunner
    record: Record
    """``record(kind, data, *, screenshot=None, blob=None)`` stores an event for this task,
    durably (``screenshot``: JPEG bytes; ``blob``: ``(data, media_type)`` of a file)."""
    save_task: Callable[[TaskInfo, dict[str, Any]], Awaitable[TaskInfo]]
    """``save_task(task, data)`` stores the task together with the ``task`` event announcing
    its state (``data``: the event's other fields), in one write, and returns it as stored
    (with subtask ids the agent added; an ended task stays as it ended)."""
    history: list[StepRecord] = field(default_factory=list)
    subtask_results: dict[str, str] = field(default_factory=dict)

    async def run(self) -> TaskInfo:
        spec = self.task.spec
        self.subtask_results = dict(spec.inputs)
        result: str | None = None
        error: str | None = None
        try:
            async with asyncio.timeout(spec.deadline_s):
                await self._set(TaskState.RUNNING)
                result = await self._triage_and_work()
        except TimeoutError:
            error = f"deadline of {spec.deadline_s:g} s passed"
        except asyncio.CancelledError:
            await asyncio.shield(self._set(TaskState.CANCELLED, error="cancelled"))
            raise
        except TaskFailed as e:
            error = str(e)
        except BrainError as e:
            error = f"brain: {e}"
        except OrchestratorError as e:
            error = f"{type(e).__name__}: {e}"
        except Exception as e:  # an agent never dies of one task
            log.exception("task %s crashed", self.task.id)
            error = f"internal error: {type(e).__name__}: {e}"
        # The outputs are stored before the final state: whoever sees the task finished
        # finds its files in the records.
        try:
            await self._keep_outputs()
        except asyncio.CancelledError:
            await asyncio.shield(self._set(TaskState.CANCELLED, error="cancelled"))
            raise
        if error is None:
            await self._set(TaskState.SUCCEEDED, result=result)
        else:
            await self._set(TaskState.FAILED, error=error)
        return self.task

    async def _keep_outputs(self) -> None:
        """Store the task's ``outputs`` off the desktop; problems go on the timeline."""
        paths = self.task.spec.outputs
        if not paths:
            return

        async def keep(path: str, data: bytes, media_type: str) -> None:
            await self.record(
                EventKind.FILE, {"path": path, "size": len(data)}, blob=(data, media_type)
            )

        try:
            async with asyncio.timeout(OUTPUTS_TIMEOUT_S):
                problems = await collect_outputs(self.desktop, paths, keep)
        except TimeoutError:
            problems = [f"keeping the outputs took over {OUTPUTS_TIMEOUT_S:.0f} s; stopped"]
        except Exception as e:  # noqa: BLE001 - the task's own outcome matters more
            log.exception("task %s: keeping outputs failed", self.task.id)
            problems = [f"keeping the outputs failed: {type(e).__name__}: {e}"]
        if problems:
            await self.record(EventKind.LOG, {"msg": "; ".join(problems)[:4000]})

    async def _set(
        self, state: TaskState, *, result: str | None = None, error: str | None = None
    ) -> None:
        self.task = self.task.model_copy(
            update={"state": state, "result": result, "error": error, "updated_at": time.time()}
        )
        # One write for the state and its event: a write cut short by the deadline or a
        # cancel may still land later, and then either both land or neither does.
        self.task = await self.save_task(self.task, {"result": result, "error": error})

    def _context(self) -> BrainContext:
        return BrainContext(
            task_id=self.task.id,
            description=self.task.spec.description,
            role=self.role,
            agent_path=self.agent_path,
            subtask_results=dict(self.subtask_results),
            history=self.history,
        )

    async def _observe(self) -> tuple[Observation, bytes]:
        shot = await self.desktop.screenshot("jpeg", quality=80)
        obs = Observation(
            screenshot=shot.data, media_type=shot.media_type, width=shot.width, height=shot.height
        )
        return obs, shot.data

    async def _triage_and_work(self) -> str:
        obs, jpeg = await self._observe()
        n = len(self.brain.usage)
        triage = await self._decide(self.brain.triage, obs, n)
        await self.record(
            EventKind.MODEL,
            {"call": "triage", **triage.model_dump(), "usage": self._usage_since(n)},
            screenshot=jpeg,
        )
        if triage.decision == "delegate":
            n = len(self.brain.usage)
            plan = await self._decide(self.brain.plan, obs, n)
            await self.record(
                EventKind.MODEL,
                {"call": "plan", **plan.model_dump(mode="json"), "usage": self._usage_since(n)},
            )
            return await self._delegate(plan)
        return await self._step_loop(self.brain.step, budget=self.task.spec.step_budget)

    async def _step_loop(
        self,
        decide: Callable[[BrainContext, Observation], Awaitable[StepDecision]],
        *,
        budget: int,
    ) -> str:
        for _ in range(budget):
            obs, jpeg = await self._observe()
            n = len(self.brain.usage)
            decision = await self._decide(decide, obs, n)
            usage = self._usage_since(n)
            if usage or decision.done or decision.failed:
                await self.record(
                    EventKind.MODEL,
                    {"call": "step", **decision.model_dump(mode="json"), "usage": usage},
                )
            if decision.done or decision.failed:
                if decision.failed:
                    raise TaskFailed(decision.result or "the agent gave up")
                return decision.result or ""
            results: list[a.ActionResult] = []
            for action in decision.actions:
                result = await self.desktop.act(action)
                results.append(result)
                await self.record(
                    EventKind.STEP,
                    {
                        "action": action.model_dump(mode="json"),
                        "result": result.model_dump(mode="json"),
                        "thought": decision.thought,
                    },
                    screenshot=jpeg,
                )
                if not result.ok:
                    break  # let the brain see the failure before doing more
            self.history.append(StepRecord(decision=decision, results=results))
            if any(not isinstance(x, _NO_SCREEN_CHANGE) for x in decision.actions):
                # Instead of a fixed sleep: observe again once the screen has been still for
                # a moment (or has kept changing for too long, e.g. a video).
                await self.desktop.wait_until_settled(
                    quiet_s=SETTLE_QUIET_S, timeout_s=SETTLE_TIMEOUT_S, poll_s=0.01
                )
        raise TaskFailed(f"step budget of {budget} steps used up before the task was done")

    async def _delegate(self, plan: Plan) -> str:
        order = _check_plan(plan)
        await self._set(TaskState.WAITING)
        done: dict[str, asyncio.Future[str]] = {
            st.id: asyncio.get_running_loop().create_future() for st in plan.subtasks
        }

        async def run_one(st: Subtask) -> str:
            deps = {d: await done[d] for d in st.depends_on}
            desc = st.description
            if deps:
                desc += "\n\nResults of the steps this depends on:\n" + "\n".join(
                    f"- {k}: {v}" for k, v in deps.items()
                )
            spec = TaskSpec(
                description=desc,
                step_budget=self.task.spec.step_budget,
                deadline_s=self.task.spec.deadline_s,
                max_attempts=self.task.spec.max_attempts,
                inputs=deps,
                script=st.script,
            )
            last_error = "not run"
            for attempt in range(1, self.task.spec.max_attempts + 1):
                child_task = await self.children.run_subtask(self.task, st, spec, attempt)
                if child_task.state == TaskState.SUCCEEDED:
                    return child_task.result or ""
                if child_task.state == TaskState.CANCELLED:
                    raise TaskFailed(f"subtask {st.id} was cancelled")
                last_error = child_task.error or "failed"
                await self.record(
                    EventKind.LOG,
                    {
                        "subtask": st.id,
                        "attempt": attempt,
                        "error": last_error,
                        "next": "retry on a fresh specialist"
                        if attempt < self.task.spec.max_attempts
                        else "give up",
                    },
                )
            raise TaskFailed(
                f"subtask {st.id} ({st.role}) failed after "
                f"{self.task.spec.max_attempts} attempt(s): {last_error}"
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
        self.subtask_results = {k: f.result() for k, f in done.items()}
        await self._set(TaskState.RUNNING)
        if plan.check is not None or self._wants_check():
            verdict = await self._step_loop(self._check_decide, budget=self.task.spec.step_budget)
            return verdict or _summary(self.subtask_results)
        return _summary(self.subtask_results)

    async def _decide(
        self, call: Callable[[BrainContext, Observation], Awaitable[T]], obs: Observation, n: int
    ) -> T:
        """Ask the brain; when it gives no usable answer, still record the tokens it spent."""
        try:
            return await call(self._context(), obs)
        except BrainError as e:
            usage = self._usage_since(n)
            if usage:
                await self.record(
                    EventKind.MODEL, {"call": "failed", "error": str(e), "usage": usage}
                )
            raise

    def _wants_check(self) -> bool:
        return self.brain.wants_check()

    def _usage_since(self, n: int) -> list[dict[str, Any]]:
        return [u.model_dump() for u in self.brain.usage[n:]]

    async def _check_decide(self, ctx: BrainContext, obs: Observation) -> StepDecision:
        return await self.brain.check(ctx, obs, dict(self.subtask_results))


def _check_plan(plan: Plan) -> list[Subtask]:
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


def _summary(results: dict[str, Any]) -> str:
    return "\n".join(f"{k}: {v}" for k, v in results.items())
