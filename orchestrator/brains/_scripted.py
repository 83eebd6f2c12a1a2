"""A brain that follows an explicit script instead of asking a model (see ``_script``).

Each step of the script is one decision; the brain reads what the previous step's actions
did from ``ctx.history`` before it returns the next one, so a failed check (or shell
command, or action) makes the *next* call return ``Fail`` with the reason. When the steps
are used up, the decision is ``Done`` with the ``result`` template filled in. An ``ask``
step returns ``Ask`` (the person's answer becomes its output), an ``approve`` step
``AwaitApproval`` (a refusal fails the task), a ``verdict`` step a shell command whose exit
status makes the report ``PASS`` or ``FAIL: <output>`` (a reviewer's). On a review round's
follow-up (``ctx.follow_up``) the brain runs the script's ``follow_up`` steps (else its
``steps`` again), with ``{{ feedback }}`` and ``{{ round }}`` filled in.

Example:
    >>> import asyncio
    >>> from orchestrator.brains import BrainContext, Observation, ScriptedBrain
    >>> brain = ScriptedBrain({"steps": [{"type": "shell", "command": "nginx -v"}]})
    >>> ctx = BrainContext(task_id="t", description="check nginx", role="admin")
    >>> obs = Observation(screenshot=b"", media_type="image/png", width=1, height=1)
    >>> asyncio.run(brain.step(ctx, obs)).actions[0].command
    'nginx -v'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ..actions import Action, CommandResult, Shell, parse_action
from ..domain import Act, Ask, AwaitApproval, Decision, Done, Fail, Plan, Review, Subtask, Triage
from ..errors import BrainError, ConfigError
from ._base import Brain, BrainContext, Observation, UsageCallback
from ._parse_text import cut
from ._script import (
    ApproveStep,
    AskStep,
    BatchStep,
    CheckStep,
    Script,
    ScriptReview,
    Step,
    VerdictStep,
)
from ._template import TemplateError, render
from ._tools import describe_validation_error

__all__ = ["ScriptedBrain"]

_TAIL = 2000
"""How much of a failing command's output the failure reason quotes (its end)."""


def _output(command: CommandResult) -> str:
    return "\n".join(p for p in (command.stdout.strip(), command.stderr.strip()) if p)


def _quoting(reason: str, output: str) -> str:
    """A failure reason followed by (the end of) the command's output."""
    if not output:
        return f"{reason} (no output)"
    return f"{reason}: {output if len(output) <= _TAIL else '...' + output[-_TAIL:]}"


def _why(command: CommandResult) -> str:
    if command.timed_out:
        return f"timed out after {command.duration_s:.0f} s"
    if command.exit_code is None:
        return "was killed"
    return f"exited with status {command.exit_code}"


@dataclass
class _Sequence:
    """Where a list of steps stands: the next step, and the decision awaiting its results."""

    steps: list[Step]
    name: str
    pos: int = 0
    pending: Decision | None = None
    pending_step: Step | None = None
    expect: str | None = None
    report_last_output: bool = False
    """Without a ``result`` template, report the last command's output (else nothing)."""


class ScriptedBrain(Brain):
    """Runs a script: the triage, plan and step decisions it spells out, and no model.

    ``script`` is validated at once; an invalid one raises ``ConfigError`` naming the path
    of each bad field.
    """

    def __init__(
        self, script: Mapping[str, Any] | Script, *, on_usage: UsageCallback | None = None
    ) -> None:
        super().__init__(on_usage=on_usage)
        if isinstance(script, Script):
            self.script = script
        else:
            try:
                self.script = Script.model_validate(script)
            except ValidationError as e:
                raise ConfigError(f"invalid script: {describe_validation_error(e)}") from e
        self._outputs: list[str] = []
        self._steps: _Sequence | None = None
        """Chosen with the first step: ``follow_up`` on a review round's follow-up."""
        self._verdict: str | None = None
        """A ``verdict`` step's report, once its command ran."""
        self._check = _Sequence(list(self.script.check), "check step")

    async def triage(self, ctx: BrainContext, obs: Observation) -> Triage:
        return Triage(decision=self.script.decision, reason="scripted")

    async def plan(self, ctx: BrainContext, obs: Observation) -> Plan:
        if self.script.decision != "delegate":
            raise BrainError("the script does not delegate: it has no subtasks")
        subtasks = [
            Subtask(
                id=st.id,
                description=st.description,
                role=st.role,
                depends_on=list(st.depends_on),
                script=st.script.model_dump(mode="json", exclude_unset=True) if st.script else None,
                outputs=list(st.outputs),
                review=_review(st.review),
            )
            for st in self.script.subtasks
        ]
        n = len(self.script.check)
        return Plan(subtasks=subtasks, check=f"the script's {n} check step(s)" if n else None)

    def wants_check(self) -> bool:
        return bool(self.script.check) or self.script.result is not None

    async def step(self, ctx: BrainContext, obs: Observation) -> Decision:
        if self._steps is None:
            follow = self.script.follow_up if ctx.follow_up is not None else []
            steps = list(follow or self.script.steps)
            self._steps = _Sequence(steps, "step", report_last_output=True)
        return self._advance(self._steps, ctx, dict(ctx.subtask_results))

    async def check(self, ctx: BrainContext, obs: Observation, results: dict[str, str]) -> Decision:
        return self._advance(self._check, ctx, {**ctx.subtask_results, **results})

    # ------------------------------------------------------------------ internals

    def _advance(
        self,
        seq: _Sequence,
        ctx: BrainContext,
        results: dict[str, str],
    ) -> Decision:
        scope = {
            "outputs": self._outputs,
            "results": results,
            "task": ctx.description,
            "role": ctx.role,
            "feedback": ctx.follow_up.feedback if ctx.follow_up else "",
            "round": str(ctx.follow_up.round if ctx.follow_up else 1),
        }
        if seq.pending is not None:
            failure = self._absorb(seq, ctx)
            if failure is not None:
                return Fail(reason=cut(failure))
        if self._verdict is not None:
            return Done(result=cut(self._verdict), thought="script finished: the verdict")
        if seq.pos >= len(seq.steps):
            if self.script.result is None:
                report = None
                if seq.report_last_output:
                    report = self._outputs[-1] if self._outputs else "done"
                return Done(result=cut(report or ""), thought="script finished")
            try:
                report = render(self.script.result, scope)
            except TemplateError as e:
                return Fail(reason=cut(f"result template: {e}"))
            return Done(result=cut(report), thought="script finished")
        step = seq.steps[seq.pos]
        seq.pos += 1
        label = f"{seq.name} {seq.pos}"
        thought = f"script: {label} of {len(seq.steps)}"
        decision: Decision
        try:
            if isinstance(step, AskStep):
                decision = Ask(question=render(step.ask, scope), thought=thought)
            else:
                actions, seq.expect = _actions(step, scope)
                if isinstance(step, ApproveStep):
                    decision = AwaitApproval(actions=actions, reason=step.approve, thought=thought)
                else:
                    decision = Act(actions=actions, thought=thought)
        except TemplateError as e:
            return Fail(reason=cut(f"{label}: {e}"))
        except ValidationError as e:
            reason = f"{label}: filled in, the action is invalid: {describe_validation_error(e)}"
            return Fail(reason=cut(reason))
        seq.pending, seq.pending_step = decision, step
        return decision

    def _absorb(self, seq: _Sequence, ctx: BrainContext) -> str | None:
        """Read the results of the pending decision; the reason the task fails, if it does."""
        decision, step = seq.pending, seq.pending_step
        seq.pending = seq.pending_step = None
        label = f"{seq.name} {seq.pos}"
        record = next((r for r in reversed(ctx.history) if r.decision is decision), None)
        if record is None or decision is None:
            raise BrainError(f"the history does not show what {label} of the script did")
        if isinstance(decision, Ask):
            self._outputs.append(record.answer or "")
            return None
        if isinstance(decision, AwaitApproval) and record.answer != "approved":
            return (
                f"{label}: a person refused to approve it ({decision.reason or 'no reason given'})"
            )
        for i, action in enumerate(record.actions):
            if i >= len(record.results):
                return f"{label}: {action.type} was not carried out"
            result = record.results[i]
            if not result.ok and not (isinstance(action, Shell) and result.command is not None):
                return f"{label}: {action.type} failed: {result.error or 'no reason given'}"
            if not isinstance(action, Shell):
                continue
            command = result.command
            if command is None:
                return f"{label}: `{action.command}` reported no command result"
            out = _output(command)
            self._outputs.append(out)
            if isinstance(step, VerdictStep):
                if command.exit_code is None or command.timed_out:
                    return _quoting(f"{label}: the verdict `{action.command}` {_why(command)}", out)
                self._verdict = "PASS" if command.ok else "FAIL"
                self._verdict += f": {out}" if out else ""
            elif isinstance(step, CheckStep):
                what = step.check.message or f"check `{action.command}`"
                if not command.ok:
                    return _quoting(f"{label}: {what} failed: it {_why(command)}", out)
                if seq.expect is not None and seq.expect not in out:
                    return _quoting(f"{label}: {what} failed: its output lacks {seq.expect!r}", out)
            elif not command.ok:
                return _quoting(f"{label}: `{action.command}` {_why(command)}", out)
        return None


def _fill(action: Action, scope: Mapping[str, Any]) -> Action:
    data = action.model_dump(mode="json")
    changed = False
    for name in ("command", "text", "cwd"):
        value = data.get(name)
        if isinstance(value, str):
            filled = render(value, scope)
            changed = changed or filled != value
            data[name] = filled
    return parse_action(data) if changed else action


def _actions(step: Step, scope: Mapping[str, Any]) -> tuple[list[Action], str | None]:
    """A step's actions with placeholders filled in, and a check's expected text."""
    if isinstance(step, CheckStep):
        c = step.check
        shell = Shell(
            command=render(c.command, scope),
            user=c.user,
            timeout_s=c.timeout_s,
            cwd=render(c.cwd, scope) if c.cwd is not None else None,
        )
        return [shell], render(c.expect, scope) if c.expect is not None else None
    if isinstance(step, VerdictStep):
        v = step.verdict
        cwd = render(v.cwd, scope) if v.cwd is not None else None
        return [
            Shell(command=render(v.command, scope), user=v.user, timeout_s=v.timeout_s, cwd=cwd)
        ], None
    if isinstance(step, BatchStep):
        return [_fill(a, scope) for a in step.batch], None
    if isinstance(step, ApproveStep):
        return [_fill(a, scope) for a in step.actions], None
    if isinstance(step, AskStep):
        raise TypeError("an ask step has no actions")
    return [_fill(step, scope)], None


def _review(review: ScriptReview | None) -> Review | None:
    """A script's reviewer as the plan's ``Review``."""
    if review is None:
        return None
    script = review.script.model_dump(mode="json", exclude_unset=True) if review.script else None
    return Review(
        role=review.role, rounds=review.rounds, instructions=review.instructions, script=script
    )
