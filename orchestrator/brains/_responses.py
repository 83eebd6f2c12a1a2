"""Acting over the Responses API with OpenAI's computer tool.

The conversation lives on the server, chained by ``previous_response_id``:

1. The first step sends the task and the screenshot, with the tools
   ``{"type": "computer_use_preview", "display_width", "display_height", "environment":
   "linux"}``, a ``shell`` function and a ``fail`` function.
2. A ``computer_call`` becomes actions (``orchestrator.protocols.openai_call_actions``, one
   or a batch); a ``function_call`` to ``shell`` a ``Shell`` action, to ``fail`` a failed
   decision. The brain remembers the response id and the call ids.
3. The next step answers each call: a ``computer_call_output`` with the new screenshot, a
   ``function_call_output`` with the command's result; failed actions are also told in a
   user message (a computer_call_output carries only a screenshot).
4. A reply with no call is the end: ``done`` with its text.

Pending safety checks on a computer call are never acknowledged here: the decision fails
with the checks' codes and messages and the call is not carried out (a policy or a human
would have to acknowledge them; see ``SAFETY_CHECK_PREFIX``).

An action that cannot be converted, or a function call with bad arguments, is answered with
the error (and the screenshot, for a computer call) and asked again up to ``max_retries``
times; then ``BrainError``. A refusal raises ``BrainError`` at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ..actions import Action
from ..domain import Act, Decision, Done, Fail
from ..errors import BrainError
from ..protocols import openai_call_actions
from ._base import BrainContext, Observation, StepRecord
from ._client import ModelClient
from ._structured import response_text
from ._tools import FAIL, ToolCallError, function_schemas, parse_call, result_text

__all__ = ["SAFETY_CHECK_PREFIX", "ResponsesActor"]

SAFETY_CHECK_PREFIX = "safety check pending"
"""Start of the reason of a decision that failed on pending safety checks."""

_MAX_THOUGHT = 20_000
_SHELL = "shell"
_FUNCTIONS = frozenset({_SHELL, FAIL})
_NUDGE = (
    "Continue: act with the computer tool or the shell function, reply with the final "
    "report when the task is done, or call `fail` with the reason."
)


@dataclass
class _Call:
    kind: Literal["computer", "function"]
    call_id: str
    first: int
    """Index of the call's first action in the decision."""
    count: int
    """How many actions the call became."""
    note: str | None = None
    """The answer to a call that was not carried out (a ``fail`` sent along with actions)."""


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def computer_tool(obs: Observation) -> dict[str, Any]:
    """The computer tool declaration for a screen of the observation's size."""
    return {
        "type": "computer_use_preview",
        "display_width": obs.width,
        "display_height": obs.height,
        "environment": "linux",
    }


def _tools(obs: Observation) -> list[dict[str, Any]]:
    functions = [
        {
            "type": "function",
            "name": name,
            "description": description,
            "parameters": params,
            "strict": False,
        }
        for name, description, params in function_schemas(only=_FUNCTIONS)
    ]
    return [computer_tool(obs), *functions]


def _screenshot_output(call_id: str, obs: Observation) -> dict[str, Any]:
    return {
        "type": "computer_call_output",
        "call_id": call_id,
        "output": {"type": "computer_screenshot", "image_url": obs.data_url()},
    }


def _function_output(call_id: str, output: str) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call_id, "output": output}


class ResponsesActor:
    """The step loop's decisions over the Responses API's computer tool, for one task."""

    def __init__(self, client: ModelClient, *, max_retries: int) -> None:
        self._client = client
        self._max_retries = max_retries
        self._previous: str | None = None
        self._last: Act | None = None
        self._calls: list[_Call] = []

    async def decide(
        self, ctx: BrainContext, obs: Observation, *, instructions: str, task: str
    ) -> Decision:
        """The next step: ``Act``, ``Done`` or ``Fail``."""
        last = ctx.history[-1] if ctx.history else None
        if self._previous is not None and last is not None and last.decision is self._last:
            items = self._answers(last, obs)
            previous: str | None = self._previous
        else:
            text = task + _summary(ctx.history)
            items = [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": text},
                        {"type": "input_image", "image_url": obs.data_url(), "detail": "auto"},
                    ],
                }
            ]
            previous = None
        problem = "no reply"
        for _ in range(self._max_retries + 1):
            params: dict[str, Any] = {"previous_response_id": previous} if previous else {}
            response = await self._client.respond(
                instructions=instructions,
                input=items,
                tools=_tools(obs),
                truncation="auto",
                **params,
            )
            if _get(response, "status") == "failed":
                error = _get(response, "error")
                reason = _get(error, "message") or "no reason given"
                raise BrainError(f"the model's response failed: {reason}")
            texts, refusal = response_text(response)
            if refusal:
                raise BrainError(f"the model refused to act: {refusal}")
            output = _get(response, "output") or []
            calls = [o for o in output if _get(o, "type") in ("computer_call", "function_call")]
            # the text is the report when there is no call, the reasoning's part when there is
            said = "\n".join(filter(None, [_reasoning(response), texts if calls else ""]))
            thought = said[:_MAX_THOUGHT] or None
            checks = [c for o in calls for c in (_get(o, "pending_safety_checks") or [])]
            if checks:
                self._previous = self._last = None
                self._calls = []
                shown = "; ".join(
                    f"{_get(c, 'code') or 'unspecified'}: {_get(c, 'message') or '(no message)'}"
                    for c in checks
                )
                return Fail(
                    reason=f"{SAFETY_CHECK_PREFIX} (not acknowledged): {shown}", thought=thought
                )
            actions: list[Action] = []
            made: list[_Call] = []
            errors: list[tuple[Any, str]] = []
            failure: str | None = None
            for item in calls:
                call_id = str(_get(item, "call_id") or _get(item, "id") or "")
                try:
                    if _get(item, "type") == "computer_call":
                        new = openai_call_actions(item)
                        made.append(_Call("computer", call_id, len(actions), len(new)))
                        actions += new
                        continue
                    name = str(_get(item, "name") or "")
                    if name not in _FUNCTIONS:
                        raise ToolCallError(
                            f"there is no function {name!r}; the functions are {sorted(_FUNCTIONS)}"
                        )
                    parsed = parse_call(name, _get(item, "arguments"))
                except ValueError as e:
                    errors.append((item, str(e)))
                    continue
                if isinstance(parsed, tuple):
                    failure = parsed[1]
                    note = "ignored: call `fail` alone, not along with actions"
                    made.append(_Call("function", call_id, len(actions), 0, note=note))
                else:
                    made.append(_Call("function", call_id, len(actions), 1))
                    actions.append(parsed)
            if errors:
                problem = "; ".join(e for _, e in errors)
                items = self._rejections(calls, errors, obs)
                previous = _get(response, "id")
                continue
            if failure is not None and not actions:
                self._previous = self._last = None
                return Fail(reason=failure, thought=thought)
            if actions:
                decision = Act(actions=actions, thought=thought)
                self._previous, self._last, self._calls = _get(response, "id"), decision, made
                return decision
            if texts.strip():
                self._previous = self._last = None
                return Done(result=texts.strip(), thought=thought)
            problem = "the reply had neither a call nor text"
            incomplete = _get(_get(response, "incomplete_details"), "reason")
            if incomplete:
                problem += f" (incomplete: {incomplete})"
            items = [{"role": "user", "content": _NUDGE}]
            previous = _get(response, "id")
        raise BrainError(
            f"no usable step decision after {self._max_retries + 1} attempt(s): {problem}"
        )

    def _answers(self, record: StepRecord, obs: Observation) -> list[dict[str, Any]]:
        """The outputs of the calls of the last decision, given what its actions did."""
        items: list[dict[str, Any]] = []
        notes: list[str] = []
        for call in self._calls:
            results = record.results[call.first : call.first + call.count]
            if call.kind == "computer":
                items.append(_screenshot_output(call.call_id, obs))
                if len(results) < call.count:
                    notes.append(f"call {call.call_id}: {_NOT_DONE}")
                for r in results:
                    if not r.ok:
                        notes.append(f"call {call.call_id}: the action failed: {r.error}")
            elif call.note is not None:
                items.append(_function_output(call.call_id, call.note))
            else:
                out = result_text(results[0]) if results else _NOT_DONE
                items.append(_function_output(call.call_id, out))
        if notes:
            items.append({"role": "user", "content": "\n".join(notes)})
        return items

    def _rejections(
        self, calls: list[Any], errors: list[tuple[Any, str]], obs: Observation
    ) -> list[dict[str, Any]]:
        """Answer every call of a reply that had invalid ones, saying what was wrong."""
        bad = {id(item): error for item, error in errors}
        items: list[dict[str, Any]] = []
        notes: list[str] = []
        for item in calls:
            call_id = str(_get(item, "call_id") or _get(item, "id") or "")
            error = bad.get(id(item))
            text = (
                f"not carried out: {error}"
                if error
                else "not carried out: another call of this reply was invalid"
            )
            if _get(item, "type") == "computer_call":
                items.append(_screenshot_output(call_id, obs))
                notes.append(f"call {call_id}: {text}")
            else:
                items.append(_function_output(call_id, text))
        items.append(
            {
                "role": "user",
                "content": "\n".join([*notes, "Nothing was done; send corrected calls."]),
            }
        )
        return items


_NOT_DONE = "not carried out: an earlier action of this step failed"


def _reasoning(response: Any) -> str:
    parts = []
    for item in _get(response, "output") or []:
        if _get(item, "type") == "reasoning":
            parts += [_get(s, "text") or "" for s in _get(item, "summary") or []]
    return "\n".join(p for p in parts if p)


def _summary(history: list[StepRecord]) -> str:
    """Steps taken before this conversation began (a history this brain did not write)."""
    if not history:
        return ""
    lines = []
    for i, record in enumerate(history, 1):
        done = ", ".join(
            f"{a.type}: {'ok' if r.ok else 'failed: ' + str(r.error)}"
            for a, r in zip(record.actions, record.results, strict=False)
        )
        lines.append(f"{i}. {done or 'nothing carried out'}")
    return "\n\nSteps already taken on this task:\n" + "\n".join(lines)
