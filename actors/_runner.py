"""How an agent carries out one task: triage, then act on its own desktop or delegate.

The runner owns the task's record while the task runs: every change of state goes through
it to the records (``TaskRecords``), and its host, the agent, reads the task from it.

- Do: a loop (observe, decide, act, record) with a step budget; the brain's ``Decision``
  says what happens next: ``Act`` (every action's result and screenshot are recorded
  before the next decision), ``Done``, ``Fail``, ``Ask`` a person (``input_required``),
  ``AwaitApproval`` of a person (``approval_required``) or ``Delegate``. The triage's
  screenshot is the first step's. The agent's policy (``orchestrator.policy``) may turn
  an ``Act`` into an ``AwaitApproval`` first; what a person approved runs as decided.
- Delegate: a plan of subtasks (a DAG); the host (``TaskHost``) runs each on a specialist;
  independent ones run in parallel; a failed subtask is retried on a fresh specialist up
  to ``max_attempts``; then the agent may check the results on its own desktop.
- A person may pause the task (``paused``, between two steps; at once while it waits on
  subtasks, which start no more until it is resumed) and resume it (``_person_waits``).
The task runs under its deadline, except while it waits for a person: each such wait has
its own timeout (``human_wait_timeout_s``) and fails the task when it passes. Cancelling
the task cancels the subtasks in the subtree.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from orchestrator import actions as a
from orchestrator.brains import Brain, BrainContext, Observation, StepRecord
from orchestrator.domain import (
    Act,
    Ask,
    AwaitApproval,
    Decision,
    Delegate,
    Done,
    Event,
    EventKind,
    Fail,
    Retry,
    TaskInfo,
    TaskState,
    Waiting,
)
from orchestrator.errors import BrainError, OrchestratorError
from orchestrator.policy import ApprovalPolicy, apply_policy

from ._budget import BudgetExceeded, BudgetWatch, as_budget_records
from ._delegation import PauseHold, check_plan, run_plan
from ._outputs import collect_outputs
from ._person_waits import PersonWaits
from ._task_ports import TaskDesktop, TaskFailed, TaskHost, TaskRecords

__all__ = ["TaskFailed", "TaskRunner"]

log = logging.getLogger(__name__)

T = TypeVar("T")

SETTLE_QUIET_S = 0.03
"""After GUI actions, the screen must be unchanged this long before the next observation."""
SETTLE_TIMEOUT_S = 2.0
"""...but the agent does not wait longer than this for it."""

OUTPUTS_TIMEOUT_S = 300.0
"""Longest time spent copying a task's outputs off its desktop."""

HUMAN_WAIT_TIMEOUT_S = 3600.0
"""Default of the longest wait for a person (``ORCHESTRATOR_HUMAN_WAIT_TIMEOUT_S``)."""

_NO_SCREEN_CHANGE = (a.Shell, a.Wait, a.CursorPosition, a.TakeScreenshot)

Decide = Callable[[BrainContext, Observation], Awaitable[Decision]]


@dataclass
class _Seen:
    """An observation and the JPEG recorded with the events of the step taken on it."""

    obs: Observation
    jpeg: bytes


@dataclass
class TaskRunner(PersonWaits):
    """Runs one task for an agent to its end state, owning the task's record meanwhile.

    Example (``tests/unit/test_runner.py`` runs it on a desktop stand-in)::

        runner = TaskRunner(task, "tester", "acme/u/boss", desktop, brain, host, records)
        ended = await runner.run()
    """

    task: TaskInfo
    role: str
    agent_path: str
    desktop: TaskDesktop
    brain: Brain
    host: TaskHost
    records: TaskRecords
    human_wait_timeout_s: float = HUMAN_WAIT_TIMEOUT_S
    """How long one wait for a person may last before the task fails."""
    policy: ApprovalPolicy = field(default_factory=ApprovalPolicy)
    """The agent's approval policy, applied to every decision before acting."""
    history: list[StepRecord] = field(default_factory=list)
    subtask_results: dict[str, str] = field(default_factory=dict)
    budget: BudgetWatch | None = None
    """Checks the subtree budgets after each model call and step (``_budget``); default: one
    over ``records`` that ends only this task."""
    cancel_reason: str = "cancelled"
    """The reason recorded when the task is cancelled (set by whoever cancels it)."""
    _write: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)
    _deadline: asyncio.Timeout | None = field(default=None, init=False, repr=False)
    _person: asyncio.Future[str] | None = field(default=None, init=False, repr=False)
    _pause_asked: bool = field(default=False, init=False, repr=False)

    # ------------------------------------------------------------------ the task's life

    async def run(self) -> TaskInfo:
        """Work on the task to its end and return it as recorded."""
        spec = self.task.spec
        self.subtask_results = dict(spec.inputs)
        result: str | None = None
        error: str | None = None
        ended = TaskState.FAILED
        if self.budget is None:
            self.budget = BudgetWatch(as_budget_records(self.records))
        try:
            async with asyncio.timeout(spec.deadline_s) as self._deadline:
                await self._set(TaskState.RUNNING)
                result = await self._triage_and_work()
        except TimeoutError:
            error = f"deadline of {spec.deadline_s:g} s passed"
        except asyncio.CancelledError:
            await asyncio.shield(self._set(TaskState.CANCELLED, error=self.cancel_reason))
            raise
        except BudgetExceeded as e:  # its subtree is cancelled with the reason
            error, ended = str(e), TaskState.CANCELLED
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
            await asyncio.shield(self._set(TaskState.CANCELLED, error=self.cancel_reason))
            raise
        if error is None:
            await self._set(TaskState.SUCCEEDED, result=result)
        else:
            await self._set(ended, error=error)
        return self.task

    async def _keep_outputs(self) -> None:
        """Store the task's ``outputs`` off the desktop; problems go on the timeline."""
        paths = self.task.spec.outputs
        if not paths:
            return

        async def keep(path: str, data: bytes, media_type: str) -> None:
            await self._record(
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
            await self._record(EventKind.LOG, {"msg": "; ".join(problems)[:4000]})

    # ------------------------------------------------------------------ the record

    async def _set(
        self,
        state: TaskState,
        *,
        result: str | None = None,
        error: str | None = None,
        waiting: Waiting | None = None,
        **data: Any,
    ) -> None:
        """Change the task's state: the record and the event announcing it in one write (a
        write cut short by the deadline or a cancel may land later: both or neither)."""
        async with self._write:
            update = {"state": state, "result": result, "error": error, "waiting": waiting}
            task = self.task.model_copy(update={**update, "updated_at": time.time()})
            said = self._event(
                EventKind.TASK, {"state": state.value, "result": result, "error": error, **data}
            )
            self.task = await self.records.put_task(task, said)

    async def add_subtask(self, child: TaskInfo) -> None:
        """``ParentTask``: record that ``child`` is one of this task's subtasks."""
        async with self._write:
            task = self.task.model_copy(update={"subtask_ids": [*self.task.subtask_ids, child.id]})
            self.task = await self.records.put_task(task)

    def _event(self, kind: EventKind, data: dict[str, Any]) -> Event:
        return Event(kind=kind, agent_id=self.task.agent_id, task_id=self.task.id, data=data)

    async def _record(
        self,
        kind: EventKind,
        data: dict[str, Any],
        *,
        screenshot: bytes | None = None,
        blob: tuple[bytes, str] | None = None,
    ) -> None:
        if screenshot is not None:
            blob = (screenshot, "image/jpeg")
        await self.records.append_event(self._event(kind, data), blob)
        if kind in (EventKind.MODEL, EventKind.STEP) and self.budget is not None:
            await self.budget.check(self.task)  # spent: BudgetExceeded when over a budget

    # ------------------------------------------------------------------ deciding

    def _context(self) -> BrainContext:
        return BrainContext(
            task_id=self.task.id,
            description=self.task.spec.description,
            role=self.role,
            agent_path=self.agent_path,
            subtask_results=dict(self.subtask_results),
            history=self.history,
            follow_up=self.task.spec.follow_up,
        )

    async def _observe(self) -> _Seen:
        screen = self.desktop.size
        size = self.brain.image_size(screen)  # the model's coordinate space asks for it
        shot = await self.desktop.screenshot(
            "jpeg", quality=80, size=None if size == screen else size
        )
        obs = Observation(
            screenshot=shot.data,
            media_type=shot.media_type,
            width=shot.width,
            height=shot.height,
            screen_width=screen[0],
            screen_height=screen[1],
        )
        return _Seen(obs, shot.data)

    async def _triage_and_work(self) -> str:
        await self._pause_point()  # paused while pending: before the first step
        seen = await self._observe()
        n = len(self.brain.usage)
        triage = await self._ask_brain(self.brain.triage, seen.obs, n)
        await self._record(
            EventKind.MODEL,
            {"call": "triage", **triage.model_dump(), "usage": self._usage_since(n)},
            screenshot=seen.jpeg,
        )
        if triage.decision == "delegate":
            n = len(self.brain.usage)
            plan = await self._ask_brain(self.brain.plan, seen.obs, n)
            await self._record(
                EventKind.MODEL,
                {"call": "plan", **plan.model_dump(mode="json"), "usage": self._usage_since(n)},
            )
            await self._pause_point()  # paused during the plan call: before it delegates
            return await self._delegate(Delegate(plan=plan))
        # the first step decides on the screen the triage saw: nothing happened since
        return await self._loop(self.brain.step, first=seen, may_delegate=True)

    async def _ask_brain(
        self, call: Callable[[BrainContext, Observation], Awaitable[T]], obs: Observation, n: int
    ) -> T:
        """Ask the brain; when it gives no usable answer, still record the tokens it spent."""
        try:
            return await call(self._context(), obs)
        except BrainError as e:
            usage = self._usage_since(n)
            if usage:
                await self._record(
                    EventKind.MODEL, {"call": "failed", "error": str(e), "usage": usage}
                )
            raise

    def _usage_since(self, n: int) -> list[dict[str, Any]]:
        return [u.model_dump() for u in self.brain.usage[n:]]

    async def _loop(self, decide: Decide, *, first: _Seen | None, may_delegate: bool) -> str:
        """Observe, decide, act until the brain ends the task or the step budget is used.
        Questions, refused approvals and pauses use no step of the budget."""
        budget = self.task.spec.step_budget
        steps = 0
        seen = first
        while True:
            await self._pause_point()
            if steps >= budget:
                raise TaskFailed(f"step budget of {budget} steps used up before the task was done")
            if seen is None:
                seen = await self._observe()
            n = len(self.brain.usage)
            decided = await self._ask_brain(decide, seen.obs, n)
            for note in self.brain.take_notes():  # what the brain did on its own, e.g.
                await self._record(EventKind.LOG, {"msg": note})  # acknowledged a check
            # the policy may hold the step for a person; the history keeps the brain's own
            decision = apply_policy(decided, self.policy)
            usage = self._usage_since(n)
            asks = isinstance(decision, Ask | AwaitApproval)  # its screen is shown to the person
            if usage or not isinstance(decision, Act):
                await self._record(
                    EventKind.MODEL,
                    {"call": "step", **decision.model_dump(mode="json"), "usage": usage},
                    screenshot=seen.jpeg if asks else None,
                )
            shot = hashlib.sha256(seen.jpeg).hexdigest() if asks else None
            match decision:
                case Done(result=result):
                    return result
                case Fail(reason=reason):
                    raise TaskFailed(reason)
                case Delegate():
                    if not may_delegate:
                        raise TaskFailed("the brain delegated while checking its subtasks")
                    await self._pause_point()  # paused during the call: before delegating
                    return await self._delegate(decision)
                case Ask(question=question):
                    reply = await self._wait_for_person(
                        TaskState.INPUT_REQUIRED,
                        "an answer",
                        Waiting(question=question, screenshot=shot),
                    )
                    self.history.append(StepRecord(decision=decision, results=[], answer=reply))
                case AwaitApproval(actions=actions, reason=reason):
                    verdict = await self._wait_for_person(
                        TaskState.APPROVAL_REQUIRED,
                        "approval",
                        Waiting(actions=actions, reason=reason, screenshot=shot),
                    )
                    if verdict == "approved":  # carried out as decided, not held again
                        steps += 1
                        await self._act(decided, actions, seen, answer=verdict)
                    else:
                        await self._refused(decided, actions[0], verdict)
                case Act(actions=actions):
                    steps += 1
                    await self._act(decision, actions, seen)
                case Retry(error=error):  # brains retry their own replies; this one gave up
                    raise TaskFailed(f"the model's reply could not be used: {error}")
            seen = None

    async def _refused(self, decision: Decision, action: a.Action, verdict: str) -> None:
        """A step a person refused fails: its first action is not carried out, with the
        person's reason (``verdict``: ``refused: why``) on the timeline and in the history."""
        result = a.ActionResult.failure(f"a person {verdict}")
        data = {"action": action.model_dump(mode="json"), "result": result.model_dump(mode="json")}
        refused = {**data, "thought": decision.thought, "carried_out": False}  # not a step spent
        await self._record(EventKind.STEP, refused)
        self.history.append(StepRecord(decision, results=[result], answer=verdict))

    async def _act(
        self,
        decision: Decision,
        actions: list[a.Action],
        seen: _Seen,
        *,
        answer: str | None = None,
    ) -> None:
        """Carry out a decision's actions, recording each, up to the first failure."""
        thought = decision.thought
        results: list[a.ActionResult] = []
        for action in actions:
            result = await self.desktop.act(action)
            results.append(result)
            await self._record(
                EventKind.STEP,
                {
                    "action": action.model_dump(mode="json"),
                    "result": result.model_dump(mode="json"),
                    "thought": thought,
                },
                screenshot=seen.jpeg,
            )
            if not result.ok:
                break  # let the brain see the failure before doing more
        self.history.append(StepRecord(decision=decision, results=results, answer=answer))
        if any(not isinstance(x, _NO_SCREEN_CHANGE) for x in actions):
            # Instead of a fixed sleep: observe again once the screen has been still for
            # a moment (or has kept changing for too long, e.g. a video).
            await self.desktop.wait_until_settled(
                quiet_s=SETTLE_QUIET_S, timeout_s=SETTLE_TIMEOUT_S, poll_s=0.01
            )

    # ------------------------------------------------------------------ delegating

    async def _delegate(self, decision: Delegate) -> str:
        plan = decision.plan
        check_plan(plan)  # a plan that cannot run fails before the task waits on it
        self._hold = hold = PauseHold(self._paused_waiting)  # a pause: none starts
        await self._set(TaskState.WAITING)
        try:
            await self._pause_held(hold)  # asked while it turned waiting: held at once
            self.subtask_results = await run_plan(
                self, self.host, plan, lambda data: self._record(EventKind.LOG, data), hold.passed
            )
            await hold.passed()  # paused while the last subtasks ran: resumed first
        finally:
            self._hold = None
            await hold.close()
        await self._set(TaskState.RUNNING)
        if plan.check is not None or self.brain.wants_check():
            verdict = await self._loop(self._check_decide, first=None, may_delegate=False)
            return verdict or _summary(self.subtask_results)
        return _summary(self.subtask_results)

    async def _check_decide(self, ctx: BrainContext, obs: Observation) -> Decision:
        return await self.brain.check(ctx, obs, dict(self.subtask_results))


def _summary(results: dict[str, Any]) -> str:
    return "\n".join(f"{k}: {v}" for k, v in results.items())
