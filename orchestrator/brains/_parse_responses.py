"""A Responses API reply (OpenAI's computer tool, our ``shell``, ``fail`` and ``ask_user``
functions) read
into a decision in screen pixels: the one parser of the ``openai-responses`` family.

Pure (plain dicts in, no ``openai`` import, no I/O): ``parse_reply("openai-responses", ...)``
and the brain's actor (``_responses``) both read replies here.

- ``computer_call`` items become our actions (``protocols.openai_call_actions``: one
  ``action``, or the batch of ``actions[]`` newer models send), every point mapped from the
  model's space to the screen by the ``Mapper``;
- a ``function_call`` to ``shell`` is a ``Shell`` action, to ``fail`` a ``Fail`` decision,
  to ``ask_user`` (alone) an ``Ask`` of the person (the answer is the call's output);
- calls carrying ``pending_safety_checks`` are an ``AwaitApproval`` of their actions, the
  reason naming each check's code and message (the actor fails, asks or acknowledges, as
  the agent's ``ApprovalPolicy.safety_checks`` says);
- a reply with no call is ``Done`` with its text; a refusal, or a response whose status is
  ``failed``, is ``Fail``;
- the reasoning items' summaries (and the text sent along with calls) are the thought;
- an unknown action, bad arguments, or a point outside the space is ``Retry`` with what was
  wrong, as is a reply with neither a call nor text.

Example:
    >>> from orchestrator.coords import Mapper
    >>> reply = {"output": [
    ...     {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Open it."}]},
    ...     {"type": "computer_call", "call_id": "c1",
    ...      "action": {"type": "double_click", "x": 512, "y": 384}}]}
    >>> decision = parse(reply, Mapper(model_size=(1024, 768), screen_size=(2048, 1536)))
    >>> decision.actions[0].x, decision.actions[0].y, decision.thought
    (1025, 769, 'Open it.')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..actions import Action
from ..coords import Mapper
from ..domain import Act, Ask, AwaitApproval, Decision, Done, Fail, Retry
from ..protocols import openai_call_actions
from ._parse_text import MAX_REFUSAL_CHARS, batch_problem, cut
from ._tools import ASK_USER, FAIL, ToolCallError, parse_call, to_screen

__all__ = [
    "FUNCTIONS",
    "SAFETY_CHECK_PREFIX",
    "SHELL",
    "Call",
    "Reading",
    "parse",
    "read",
    "reasoning_summary",
    "reply_texts",
]

SAFETY_CHECK_PREFIX = "safety check pending"
"""Start of the reason of a decision held on pending safety checks."""
SHELL = "shell"
"""The function that runs a command on the desktop."""
FUNCTIONS = frozenset({SHELL, FAIL, ASK_USER})
"""The functions declared next to the computer tool."""

_MAX_THOUGHT = 20_000


@dataclass
class Call:
    """One call of a reply, and where its actions are in the decision."""

    kind: Literal["computer", "function"]
    call_id: str
    first: int
    """Index of the call's first action in the decision."""
    count: int
    """How many actions the call became."""
    note: str | None = None
    """The answer to a call that was not carried out (a ``fail`` sent along with actions)."""
    asks: bool = False
    """An ``ask_user`` call: the person's answer is its output."""
    checks: list[dict[str, Any]] = field(default_factory=list)
    """A computer call's pending safety checks (``id``, ``code``, ``message``)."""


@dataclass
class Reading:
    """All a reply says: the decision, and what the actor needs to answer its calls."""

    decision: Decision
    calls: list[Call] = field(default_factory=list)
    """The calls behind an ``Act`` (or ``AwaitApproval``), in order."""
    items: list[dict[str, Any]] = field(default_factory=list)
    """Every call item of the reply (``computer_call`` and ``function_call``)."""
    errors: dict[int, str] = field(default_factory=dict)
    """What was wrong with invalid call items, by index in ``items`` (then ``Retry``)."""
    checks: list[dict[str, Any]] = field(default_factory=list)
    """The pending safety checks of the reply's computer calls."""
    refusal: str | None = None
    """The model's refusal, if it refused (then ``Fail``)."""
    failed: str | None = None
    """Why the response failed, if its status is ``failed`` (then ``Fail``)."""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def reply_texts(reply: dict[str, Any]) -> tuple[str, str | None]:
    """The text and the refusal (if any) of a reply's message items."""
    texts: list[str] = []
    refusals: list[str] = []
    for item in reply.get("output") or []:
        if not isinstance(item, dict) or item.get("type") != "message":
            continue
        for part in item.get("content") or []:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "output_text":
                texts.append(str(part.get("text") or ""))
            elif part.get("type") == "refusal":
                refusals.append(str(part.get("refusal") or ""))
    return "".join(texts), ("; ".join(refusals) or None)


def reasoning_summary(reply: dict[str, Any]) -> str:
    """The summaries of a reply's reasoning items, one per line."""
    parts: list[str] = []
    for item in reply.get("output") or []:
        if isinstance(item, dict) and item.get("type") == "reasoning":
            parts += [str(_dict(s).get("text") or "") for s in item.get("summary") or []]
    return "\n".join(p for p in parts if p)


def _checks_text(checks: list[dict[str, Any]]) -> str:
    return "; ".join(
        f"{c.get('code') or 'unspecified'}: {c.get('message') or '(no message)'}" for c in checks
    )


def _call_actions(item: dict[str, Any], mapper: Mapper) -> list[Action] | tuple[str, str]:
    """A call item's actions in screen pixels, or ``(FAIL, reason)``; ``ValueError``."""
    if item.get("type") == "computer_call":
        return [to_screen(a, mapper) for a in openai_call_actions(item)]
    name = str(item.get("name") or "")
    if name not in FUNCTIONS:
        raise ToolCallError(f"there is no function {name!r}; the functions are {sorted(FUNCTIONS)}")
    arguments = item.get("arguments")
    parsed = parse_call(name, arguments if isinstance(arguments, str) else None)
    return parsed if isinstance(parsed, tuple) else [parsed]


def read(reply: Any, mapper: Mapper) -> Reading:
    """Everything a Responses API reply says; see the module docstring."""
    if not isinstance(reply, dict):
        return Reading(Retry(error="the reply is not a JSON object"))
    if reply.get("status") == "failed":
        reason = _dict(reply.get("error")).get("message") or "no reason given"
        failed = cut(str(reason), MAX_REFUSAL_CHARS)
        return Reading(Fail(reason=f"the model's response failed: {failed}"), failed=failed)
    texts, refusal = reply_texts(reply)
    if refusal:
        refusal = cut(refusal, MAX_REFUSAL_CHARS)
        return Reading(Fail(reason=f"the model refused to act: {refusal}"), refusal=refusal)
    items = [
        o
        for o in reply.get("output") or []
        if isinstance(o, dict) and o.get("type") in ("computer_call", "function_call")
    ]
    # the text is the report when there is no call, the reasoning's part when there is
    said = "\n".join(filter(None, [reasoning_summary(reply), texts if items else ""]))
    thought = said[:_MAX_THOUGHT] or None
    checks = [
        _dict(c)
        for o in items
        if o.get("type") == "computer_call"
        for c in o.get("pending_safety_checks") or []
    ]
    actions: list[Action] = []
    calls: list[Call] = []
    errors: dict[int, str] = {}
    failure: str | None = None
    question: Call | None = None
    asked = ""
    for i, item in enumerate(items):
        kind: Literal["computer", "function"] = (
            "computer" if item.get("type") == "computer_call" else "function"
        )
        call_id = str(item.get("call_id") or item.get("id") or "")
        try:
            parsed = _call_actions(item, mapper)
        except ValueError as e:  # ToolCallError, ValidationError, OutOfSpaceError
            errors[i] = str(e)
            continue
        if isinstance(parsed, tuple) and parsed[0] == ASK_USER:
            question = Call(kind, call_id, len(actions), 0, asks=True)
            asked = parsed[1]
            calls.append(question)
        elif isinstance(parsed, tuple):
            failure = parsed[1]
            note = "ignored: call `fail` alone, not along with actions"
            calls.append(Call(kind, call_id, len(actions), 0, note=note))
        else:
            pending = [_dict(c) for c in item.get("pending_safety_checks") or []]
            calls.append(Call(kind, call_id, len(actions), len(parsed), checks=pending))
            actions += parsed
    if (too_much := batch_problem(actions)) is not None:
        errors[len(items)] = too_much
    reading = Reading(Retry(error="no reply"), calls, items, errors, checks)
    if checks:
        reason = cut(f"{SAFETY_CHECK_PREFIX}: {_checks_text(checks)}")
        if actions and not errors:
            reading.decision = AwaitApproval(actions=actions, reason=reason, thought=thought)
        else:
            reading.decision = Fail(reason=reason, thought=thought)
    elif errors:
        reading.decision = Retry(error=cut("; ".join(errors.values())), thought=thought)
    elif question is not None and (actions or failure is not None):
        question.asks, question.note = False, "ignored: call `ask_user` alone"
        reading.decision = (
            Act(actions=actions, thought=thought)
            if actions
            else Fail(reason=cut(failure or ""), thought=thought)
        )
    elif question is not None:
        reading.decision = Ask(question=asked[:20_000], thought=thought)
    elif failure is not None and not actions:
        reading.decision = Fail(reason=cut(failure), thought=thought)
    elif actions:
        reading.decision = Act(actions=actions, thought=thought)
    elif texts.strip():
        reading.decision = Done(result=cut(texts.strip()), thought=thought)
    else:
        problem = "the reply had neither a call nor text"
        incomplete = _dict(reply.get("incomplete_details")).get("reason")
        if incomplete:
            problem += f" (incomplete: {incomplete})"
        reading.decision = Retry(error=problem, thought=thought)
    return reading


def parse(reply: Any, mapper: Mapper) -> Decision:
    """The decision of a Responses API reply (the parsed JSON body), in screen pixels."""
    return read(reply, mapper).decision
