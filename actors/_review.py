"""Review rounds: a reviewer checks a specialist's result; feedback goes back to the same
specialist, on the same desktop, as a follow-up with its history.

The flow (``review_rounds``, from ``run_plan`` once a subtask with a ``Review`` succeeded):

1. The specialist is held (no other subtask or reviewer is given to it) until the rounds end.
2. A reviewer is staffed: an idle child with the review's role (never the specialist), or a
   new hire with a desktop of its own; it is held too and reviews every round.
3. Each round, the delegating agent copies the subtask's ``outputs`` from the specialist's
   desktop to ``~/review/`` on the reviewer's (through the runtime: the children's
   ``read_path``/``write_file``; a directory arrives as ``<name>.tar.gz``), then gives the
   reviewer a review task: the subtask, the specialist's report, the instructions and where
   the copies are. The reviewer checks on its own desktop.
4. The review task's report is the verdict (``read_verdict``): a first line ``PASS`` (notes
   may follow) or ``FAIL: <feedback>``, or a JSON object ``{"verdict": "pass"|"fail",
   "feedback": "..."}``. A scripted reviewer ends with a ``verdict`` step (its command's exit
   status decides, its output is the feedback). A review task that fails, or reports no
   verdict, ends the review: the attempt at the subtask fails with why.
5. ``FAIL``: the specialist gets a follow-up task (``TaskSpec.follow_up``: the task it
   follows, the round, the feedback; the feedback is in its description too). Its agent
   keeps the finished task's step history, so the follow-up's brain context starts with
   it; a scripted specialist may run ``follow_up`` steps and read ``{{ feedback }}`` and
   ``{{ round }}``. Then the next round's review.
6. Still ``FAIL`` after ``rounds`` rounds: the attempt fails with the last feedback; the
   plan's rule goes on from there (a fresh specialist while ``max_attempts`` allows).

Every round is on the delegating task's timeline as ``log`` events: ``review_started``,
``review_verdict`` (round, verdict, feedback), ``follow_up_started`` (and ``review_failed``).

Example (``run_plan``'s use)::

    result, why = await review_rounds(parent, host, subtask, spec, finished, log, gate)
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.domain import FollowUp, Subtask, TaskInfo, TaskSpec, TaskState

from ._task_ports import ParentTask, TaskFailed, TaskHost

if TYPE_CHECKING:
    from orchestrator.brains import StepRecord

    from ._tasks import AgentHost, ChildSlot

__all__ = ["REVIEW_DIR", "ReviewHost", "Verdict", "read_verdict", "review_rounds"]

log = logging.getLogger(__name__)

REVIEW_DIR = "~/review"
"""Where the specialist's files are copied on the reviewer's desktop."""

HISTORIES_KEPT = 16
"""Finished tasks whose step history an agent keeps for follow-ups (the newest ones)."""

_QUOTED = 6000
"""Most characters of a report or feedback quoted in a task's description."""

Log = Callable[[dict[str, Any]], Awaitable[None]]
Gate = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Verdict:
    """A reviewer's verdict."""

    passed: bool
    feedback: str
    """What must change (``FAIL``), or the reviewer's notes (``PASS``)."""


_FIRST_LINE = re.compile(r"^[\W_]*(PASS(?:ED)?|FAIL(?:ED)?)\b[\s:.*_\-]*(.*)$", re.IGNORECASE)


def read_verdict(report: str) -> Verdict | None:
    """The verdict in a review task's report, or None when it holds none.

    Example:
        >>> read_verdict("FAIL: the greeting lacks a name")
        Verdict(passed=False, feedback='the greeting lacks a name')
        >>> read_verdict('{"verdict": "pass", "feedback": "fine"}').passed
        True
    """
    text = report.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict) and str(data.get("verdict", "")).lower() in ("pass", "fail"):
            return Verdict(data["verdict"].lower() == "pass", str(data.get("feedback") or ""))
    first, _, rest = text.partition("\n")
    m = _FIRST_LINE.match(first.strip())
    if m is None:
        return None
    feedback = "\n".join(p for p in (m.group(2).strip(), rest.strip()) if p)
    return Verdict(m.group(1).upper().startswith("PASS"), feedback)


def _quote(text: str) -> str:
    return text if len(text) <= _QUOTED else text[:_QUOTED] + "\n[...]"


def review_text(st: Subtask, report: str, rnd: int, files: list[str]) -> str:
    """The reviewer's task, in words."""
    rounds = st.review.rounds if st.review else rnd
    instructions = st.review.instructions if st.review else None
    parts = [
        f"Review the work of a specialist ({st.role}) on this task (review round {rnd} of "
        f"at most {rounds}):\n{_quote(st.description)}",
        f"The specialist's report:\n{_quote(report) or '(none)'}",
    ]
    if instructions:
        parts.append(f"What to check:\n{_quote(instructions)}")
    if files:
        parts.append("Its files, copied to your desktop:\n" + "\n".join(f"- {f}" for f in files))
    parts.append(
        "Check it on your own desktop. Your final report is your verdict: a first line "
        "PASS (notes may follow), or FAIL: what must change (it goes back to the specialist)."
    )
    return "\n\n".join(parts)


def follow_up_text(st: Subtask, description: str, feedback: str, rnd: int) -> str:
    """The specialist's follow-up task, in words."""
    role = st.review.role if st.review else "reviewer"
    return (
        f"{description}\n\nA reviewer ({role}) checked your work and sent it back (review "
        f"round {rnd - 1}). Feedback:\n{_quote(feedback) or '(none given)'}\n\n"
        "Fix it on the same desktop, then report again."
    )[:20_000]


async def review_rounds(
    parent: ParentTask,
    host: TaskHost,
    st: Subtask,
    spec: TaskSpec,
    finished: TaskInfo,
    log: Log,
    gate: Gate,
) -> tuple[str | None, str]:
    """Review ``finished`` (the specialist's succeeded task at ``st``, given as ``spec``):
    ``(result, "")`` once a reviewer passes it (the specialist's last report), else
    ``(None, why)`` (this attempt at the subtask fails with why)."""
    review = st.review
    if review is None:
        return finished.result or "", ""
    specialist = finished.agent_id
    host.hold(specialist, True)
    reviewer: str | None = None
    current = finished
    feedback = ""
    review_st = st.model_copy(
        update={"id": f"{st.id}.review"[:64], "role": review.role, "script": review.script}
    )
    said = {"review": st.id, "specialist": specialist}
    try:
        for rnd in range(1, review.rounds + 1):
            if rnd > 1:
                await gate()
                follow = spec.model_copy(
                    update={
                        "description": follow_up_text(st, spec.description, feedback, rnd),
                        "follow_up": FollowUp(task_id=current.id, round=rnd, feedback=feedback),
                    }
                )
                await log(
                    {
                        "msg": f"{st.id}: follow-up round {rnd} on the same specialist",
                        "event": "follow_up_started",
                        "round": rnd,
                        "follows": current.id,
                        **said,
                    }
                )
                current = await host.run_subtask(parent, st, follow, 1, on=specialist)
                if current.state == TaskState.CANCELLED:
                    raise TaskFailed(f"subtask {st.id} was cancelled")
                if current.state != TaskState.SUCCEEDED:
                    return None, f"follow-up of review round {rnd - 1}: {current.error}"
            await gate()
            if reviewer is None:
                reviewer = await host.staff(review.role, avoid=specialist)
            files = await host.copy_files(specialist, reviewer, spec.outputs, REVIEW_DIR)
            await log(
                {
                    "msg": f"{st.id}: review round {rnd} by a {review.role}",
                    "event": "review_started",
                    "round": rnd,
                    "reviewer": reviewer,
                    "task_id": current.id,
                    "files": files,
                    **said,
                }
            )
            checking = TaskSpec(
                description=review_text(st, current.result or "", rnd, files),
                step_budget=spec.step_budget,
                deadline_s=spec.deadline_s,
                max_attempts=1,
                inputs={st.id: current.result or ""},
                script=review.script,
            )
            done = await host.run_subtask(parent, review_st, checking, 1, on=reviewer)
            if done.state == TaskState.CANCELLED:
                raise TaskFailed(f"the review of subtask {st.id} was cancelled")
            verdict = read_verdict(done.result or "") if done.state == TaskState.SUCCEEDED else None
            if verdict is None:
                why = (
                    f"review round {rnd}: the reviewer failed: {done.error}"
                    if done.state != TaskState.SUCCEEDED
                    else f"review round {rnd}: the reviewer gave no verdict: {done.result!r}"[:2000]
                )
                await log({"msg": why, "event": "review_failed", "round": rnd, **said})
                return None, why
            feedback = verdict.feedback
            word = "pass" if verdict.passed else "fail"
            await log(
                {
                    "msg": f"{st.id}: round {rnd}: {word.upper()}: {feedback}"[:300],
                    "event": "review_verdict",
                    "round": rnd,
                    "verdict": word,
                    "feedback": feedback,
                    "review_task_id": done.id,
                    "reviewer": reviewer,
                    **said,
                }
            )
            if verdict.passed:
                return current.result or "", ""
        return None, (
            f"did not pass the review of a {review.role} in {review.rounds} round(s): {feedback}"
        )
    finally:
        host.hold(specialist, False)
        if reviewer is not None:
            host.hold(reviewer, False)


def _dest(path: str) -> str:
    """Where a specialist's ``path`` lands under ``REVIEW_DIR``."""
    rel = path[2:] if path.startswith("~/") else path
    rel = rel.strip("/") or "root"
    return f"{REVIEW_DIR}/{rel}"


class ReviewHost:
    """The review rounds' part of ``AgentTasks`` (``TaskHost``): children held for a
    review, reviewers staffed, files copied between children's desktops, follow-ups run on
    the very child, and the step histories follow-ups start with."""

    _host: AgentHost

    if TYPE_CHECKING:

        def _idle_child(self, role: str) -> ChildSlot | None: ...
        def _free_name(self, base: str) -> str: ...
        async def _hire_for(self, name: str, subtask: Subtask) -> Any: ...
        async def _run_on(
            self, child: ChildSlot, parent: ParentTask, subtask: Subtask, spec: TaskSpec
        ) -> TaskInfo: ...
        async def _failed_attempt(
            self, agent_id: str, parent: ParentTask, spec: TaskSpec, error: str
        ) -> TaskInfo: ...

    @functools.cached_property
    def _held(self) -> set[str]:
        """Children held for review rounds: not picked for other subtasks or reviews."""
        return set()

    @functools.cached_property
    def _histories(self) -> OrderedDict[str, list[StepRecord]]:
        """Step histories of the newest finished tasks, by task id (for follow-ups)."""
        return OrderedDict()

    def hold(self, agent_id: str, held: bool) -> None:
        """Hold a child for review rounds (or let it go)."""
        if held:
            self._held.add(agent_id)
        else:
            self._held.discard(agent_id)

    async def staff(self, role: str, avoid: str | None = None) -> str:
        """An idle child with ``role`` (not held, not ``avoid``), or a new hire; held."""
        child = self._idle_child(role)
        if child is not None and child.info.id != avoid:
            agent_id = child.info.id
        else:
            from ._names import slug

            name = self._free_name(slug(role))
            try:
                info = await self._hire_for(name, Subtask(id="review", description=role, role=role))
            except Exception as e:  # noqa: BLE001 - the review cannot happen: say why
                cause = getattr(e, "cause", None) or e
                raise TaskFailed(f"could not hire a {role}: {type(cause).__name__}: {cause}") from e
            agent_id = info.id
        self.hold(agent_id, True)
        return agent_id

    async def run_held(
        self, agent_id: str, parent: ParentTask, subtask: Subtask, spec: TaskSpec
    ) -> TaskInfo:
        """Run ``spec`` on the held child ``agent_id`` (a failed task if it is gone)."""
        child = self._host.children.get(agent_id)
        if child is None or child.handle is None:
            error = f"agent {agent_id} is gone"
            return await self._failed_attempt(agent_id, parent, spec, error)
        return await self._run_on(child, parent, subtask, spec)

    async def copy_files(self, source: str, target: str, paths: list[str], into: str) -> list[str]:
        """Copy ``paths`` from child ``source``'s desktop to ``into`` on child ``target``'s;
        one line per path: where it went, or why it did not."""
        src = self._host.children.get(source)
        dst = self._host.children.get(target)
        lines: list[str] = []
        for path in paths:
            dest = _dest(path).replace(REVIEW_DIR, into, 1)
            try:
                if src is None or dst is None:
                    raise TaskFailed("the agent is gone")
                is_dir, data = await src.handle.read_path.remote(path)
                if is_dir:
                    dest += ".tar.gz"
                await dst.handle.write_file.remote(dest, data)
            except Exception as e:  # noqa: BLE001 - the reviewer is told what is missing
                cause = getattr(e, "cause", None) or e
                lines.append(f"{path}: not copied ({type(cause).__name__}: {cause})"[:500])
                continue
            what = "directory, as a gzipped tarball" if is_dir else f"{len(data)} bytes"
            lines.append(f"{dest} (the specialist's {path}, {what})")
        return lines

    def history_for(self, spec: TaskSpec) -> list[StepRecord]:
        """The history a task starts with: the followed task's, for a follow-up."""
        if spec.follow_up is None:
            return []
        return list(self._histories.get(spec.follow_up.task_id, []))

    def keep_history(self, task_id: str, history: list[StepRecord]) -> None:
        """Keep a finished task's steps for a follow-up (the newest ``HISTORIES_KEPT``)."""
        self._histories[task_id] = list(history)
        while len(self._histories) > HISTORIES_KEPT:
            self._histories.popitem(last=False)
