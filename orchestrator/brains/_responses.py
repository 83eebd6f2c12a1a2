"""Acting over the Responses API with OpenAI's computer tool.

The conversation lives on the server, chained by ``previous_response_id``:

1. The first step sends the task and the screenshot, with the computer tool and the
   ``shell``, ``fail`` and ``ask_user`` functions, and asks for reasoning summaries
   (``reasoning={"summary": "concise"}``): they become the decisions' thoughts.
2. The reply is read by ``_parse_responses.read`` (the family's one parser, also behind
   ``parse_reply``): a ``computer_call`` becomes actions (one, or the batch of
   ``actions[]``), every point mapped from the model's space to screen pixels; a
   ``function_call`` to ``shell`` a ``Shell`` action, to ``fail`` a failed decision, to
   ``ask_user`` an ``Ask`` of the person. The actor remembers the response id and the
   call ids.
3. The next step answers each call: a ``computer_call_output`` with the new screenshot, a
   ``function_call_output`` with the command's result (or the person's answer); failed
   actions are also told in a user message (a computer_call_output carries only a
   screenshot).
4. A reply with no call is the end: ``done`` with its text.

The computer tool's shape is chosen by the model's name: models named
``computer-use-preview*`` take the preview tool, ``{"type": "computer_use_preview",
"display_width", "display_height", "environment": "linux"}`` (the size of the screenshots
sent); every other model takes the GA tool, ``{"type": "computer"}``, which has no fields:
the model reads the size off the screenshots. Both answer in pixels of the screenshot; the
brain's coordinate space (``space_of(config)``, native by default) sizes the screenshots
and maps the replies back.

``current_url`` is not sent: the API reads it from a ``computer_call_output`` to check the
page a *browser* environment is on against the task (the ``irrelevant_domain`` safety
check). Our environment is a Linux desktop, not a browser, with no one current page to
report, so the field does not apply.

Pending safety checks on a computer call are handled as the agent's policy says
(``ApprovalPolicy.safety_checks``, given to the brain by ``make_brain``):

- ``fail`` (default): the decision fails with the checks' codes and messages
  (``SAFETY_CHECK_PREFIX``) and the call is not carried out;
- ``ask``: the decision is an ``AwaitApproval`` of the call's actions (the checks are the
  reason). Approved, the actions run and the next request answers the call with the
  screenshot after them and ``acknowledged_safety_checks`` (each check's ``id``, ``code``
  and ``message``, as the API sent them); refused, nothing runs and the call is answered
  with the screenshot, no acknowledgement, and the refusal in a user message;
- ``acknowledge`` (an operator opt-in, checked by ``make_brain``): the actions run at once
  and the checks are acknowledged in the next request; the brain notes it for the timeline
  (``Brain.take_notes``).

An action that cannot be converted (or lies outside the space), or a function call with
bad arguments, is answered with the error (and the screenshot, for a computer call) and
asked again up to ``max_retries`` times; then ``BrainError``. A refusal raises
``BrainError`` at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ..coords import CoordinateSpace, Mapper, NativeSpace, model_size
from ..domain import Act, Ask, AwaitApproval, Decision, Fail, Retry
from ..errors import BrainError
from ..policy import SafetyChecks
from ._base import BrainContext, Observation, StepRecord
from ._client import ModelClient
from ._parse_responses import FUNCTIONS, SAFETY_CHECK_PREFIX, Call, read
from ._parse_text import cut
from ._tools import function_schemas, result_text

__all__ = ["SAFETY_CHECK_PREFIX", "ResponsesActor", "computer_tool", "is_preview"]

_PREVIEW = re.compile(r"^computer-use-preview", re.IGNORECASE)
REASONING = {"summary": "concise"}
"""Asked of every reply: a short summary of the model's reasoning, recorded as the thought."""
_NUDGE = (
    "Continue: act with the computer tool or the shell function, reply with the final "
    "report when the task is done, call `fail` with the reason, or call `ask_user` with a "
    "question only the person who gave you the task can answer."
)


def is_preview(model: str) -> bool:
    """Whether ``model`` takes the preview computer tool (``computer-use-preview*``)."""
    return bool(_PREVIEW.match(model.strip()))


def computer_tool(obs: Observation, model: str) -> dict[str, Any]:
    """The computer tool declaration for ``model``, for screenshots of the observation's size.

    Example:
        >>> obs = Observation(screenshot=b"", media_type="image/png", width=1024, height=768)
        >>> computer_tool(obs, "computer-use-preview-2025-03-11")["display_width"]
        1024
        >>> computer_tool(obs, "gpt-5.4")
        {'type': 'computer'}
    """
    if not is_preview(model):
        return {"type": "computer"}
    return {
        "type": "computer_use_preview",
        "display_width": obs.width,
        "display_height": obs.height,
        "environment": "linux",
    }


def _tools(obs: Observation, model: str) -> list[dict[str, Any]]:
    functions = [
        {
            "type": "function",
            "name": name,
            "description": description,
            "parameters": params,
            "strict": False,
        }
        for name, description, params in function_schemas(only=FUNCTIONS)
    ]
    return [computer_tool(obs, model), *functions]


def _screenshot_output(
    call_id: str, obs: Observation, acknowledged: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": "computer_call_output",
        "call_id": call_id,
        "output": {"type": "computer_screenshot", "image_url": obs.data_url()},
    }
    if acknowledged:
        item["acknowledged_safety_checks"] = [_acknowledged(c) for c in acknowledged]
    return item


def _acknowledged(check: dict[str, Any]) -> dict[str, Any]:
    """A pending safety check as ``acknowledged_safety_checks`` takes it: its ``id`` (required)
    and its ``code`` and ``message`` as sent."""
    return {"id": str(check.get("id") or ""), **{k: check.get(k) for k in ("code", "message")}}


def _function_output(call_id: str, output: str) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call_id, "output": output}


def _checks_text(checks: list[dict[str, Any]]) -> str:
    return "; ".join(
        f"{c.get('code') or 'unspecified'}: {c.get('message') or '(no message)'}" for c in checks
    )


class ResponsesActor:
    """The step loop's decisions over the Responses API's computer tool, for one task."""

    def __init__(
        self,
        client: ModelClient,
        *,
        max_retries: int,
        space: CoordinateSpace | None = None,
        safety_checks: SafetyChecks = "fail",
        note: Callable[[str], None] | None = None,
    ) -> None:
        """``space``: the coordinate space of the model's replies (default: screen pixels);
        ``safety_checks``: what to do with pending safety checks (the agent's policy);
        ``note``: told what the actor did on its own (checks it acknowledged)."""
        self._client = client
        self._max_retries = max_retries
        self._space = space or NativeSpace()
        self._safety_checks = safety_checks
        self._note = note or (lambda _: None)
        self._previous: str | None = None
        self._last: Act | Ask | AwaitApproval | None = None
        self._acknowledge = False
        """Whether the calls of ``_last`` are answered with their checks acknowledged."""
        self._calls: list[Call] = []
        self._mapper: Mapper | None = None

    async def decide(
        self, ctx: BrainContext, obs: Observation, *, instructions: str, task: str
    ) -> Decision:
        """The next step: ``Act``, ``Ask``, ``AwaitApproval``, ``Done`` or ``Fail``."""
        self._mapper = mapper = Mapper(model_size(self._space, obs.screen_size), obs.screen_size)
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
                tools=_tools(obs, self._client.model),
                reasoning=REASONING,
                truncation="auto",
                **params,
            )
            reading = read(response, mapper)
            if reading.failed is not None:
                raise BrainError(f"the model's response failed: {reading.failed}")
            if reading.refusal is not None:
                raise BrainError(f"the model refused to act: {reading.refusal}")
            decision = reading.decision
            if reading.checks:
                return self._checked(reading.decision, reading.checks, reading.calls, response)
            if isinstance(decision, Retry):
                problem = decision.error
                if reading.errors:
                    items = self._rejections(reading.items, reading.errors, obs)
                else:
                    items = [{"role": "user", "content": _NUDGE}]
                previous = response.get("id")
                continue
            if isinstance(decision, Act | Ask):
                return self._remember(decision, reading.calls, response)
            self._previous = self._last = None
            return decision
        raise BrainError(
            f"no usable step decision after {self._max_retries + 1} attempt(s): {problem}"
        )

    def _remember(
        self,
        decision: Act | Ask | AwaitApproval,
        calls: list[Call],
        response: dict[str, Any],
        *,
        acknowledge: bool = False,
    ) -> Decision:
        """Keep what the next request needs to answer ``decision``'s calls, and return it."""
        self._previous, self._last = response.get("id"), decision
        self._calls, self._acknowledge = calls, acknowledge
        return decision

    def _checked(
        self,
        decision: Decision,
        checks: list[dict[str, Any]],
        calls: list[Call],
        response: dict[str, Any],
    ) -> Decision:
        """A reply with pending safety checks, as the policy says (see the module docstring)."""
        text = _checks_text(checks)
        if isinstance(decision, AwaitApproval) and self._safety_checks == "ask":
            return self._remember(decision, calls, response)
        if isinstance(decision, AwaitApproval) and self._safety_checks == "acknowledge":
            self._note(f"{SAFETY_CHECK_PREFIX}: acknowledged by the agent's policy: {text}")
            act = Act(actions=decision.actions, thought=decision.thought)
            return self._remember(act, calls, response, acknowledge=True)
        self._previous = self._last = None
        self._calls = []
        return Fail(
            reason=cut(f"{SAFETY_CHECK_PREFIX} (not acknowledged): {text}"),
            thought=decision.thought,
        )

    def _answers(self, record: StepRecord, obs: Observation) -> list[dict[str, Any]]:
        """The outputs of the calls of the last decision, given what its actions did (and,
        for a question or an approval, the person's answer)."""
        items: list[dict[str, Any]] = []
        notes: list[str] = []
        # a person refused the step (the checks', or a policy rule's): nothing to acknowledge
        refused = record.answer is not None and record.answer != "approved"
        approved = not refused and (
            self._acknowledge
            or (isinstance(record.decision, AwaitApproval) and record.answer == "approved")
        )
        for call in self._calls:
            results = record.results[call.first : call.first + call.count]
            if call.kind == "computer":
                acknowledged = call.checks if approved else None
                items.append(_screenshot_output(call.call_id, obs, acknowledged))
                if len(results) < call.count:
                    notes.append(f"call {call.call_id}: {_NOT_DONE}")
                for r in results:
                    if not r.ok:
                        notes.append(f"call {call.call_id}: the action failed: {r.error}")
            elif call.note is not None:
                items.append(_function_output(call.call_id, call.note))
            elif call.asks:
                answer = record.answer or "(no answer)"
                items.append(_function_output(call.call_id, f"The person answered: {answer}"))
            else:
                out = result_text(results[0], self._mapper) if results else _NOT_DONE
                items.append(_function_output(call.call_id, out))
        if notes:
            items.append({"role": "user", "content": "\n".join(notes)})
        return items

    def _rejections(
        self, calls: list[dict[str, Any]], errors: dict[int, str], obs: Observation
    ) -> list[dict[str, Any]]:
        """Answer every call of a reply that had invalid ones, saying what was wrong."""
        items: list[dict[str, Any]] = []
        notes: list[str] = []
        for i, item in enumerate(calls):
            call_id = str(item.get("call_id") or item.get("id") or "")
            error = errors.get(i)
            text = (
                f"not carried out: {error}"
                if error
                else "not carried out: another call of this reply was invalid"
            )
            if item.get("type") == "computer_call":
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
        answer = f" (a person answered: {record.answer})" if record.answer is not None else ""
        lines.append(f"{i}. {done or 'nothing carried out'}{answer}")
    return "\n\nSteps already taken on this task:\n" + "\n".join(lines)
