"""A chat completion calling our function tools, read into a decision in screen pixels: the
one parser of the ``chat-tools`` family.

Pure (plain dicts in, no ``openai`` import, no I/O): ``parse_reply("chat-tools", ...)`` and
the brain's actor (``_chat``) both read replies here.

- each tool call of the first choice is parsed by ``_tools.parse_call``: an action (its
  points mapped from the model's space to the screen by the ``Mapper``), or ``done`` /
  ``fail`` / ``ask_user`` with the text;
- actions are an ``Act`` (a ``done``/``fail``/``ask_user`` sent along with them is ignored,
  and answered so); ``done`` alone is ``Done``, ``fail`` alone ``Fail``, ``ask_user`` alone
  ``Ask`` (the person's answer is the call's result in the next request); the message's
  text is the thought;
- a refusal is ``Fail``;
- no tool call is ``Retry`` with ``NO_TOOL_CALL``; an unknown tool, invalid arguments, a
  point outside the space, or two of ``done``, ``fail`` and ``ask_user`` are ``Retry``
  with what was wrong.

Example:
    >>> from orchestrator.coords import Mapper
    >>> reply = {"choices": [{"message": {"role": "assistant", "content": "Open the menu.",
    ...     "tool_calls": [{"id": "c1", "type": "function",
    ...                     "function": {"name": "click", "arguments": '{"x": 640, "y": 400}'}}]}}]}
    >>> decision = parse(reply, Mapper(model_size=(1280, 800), screen_size=(1920, 1200)))
    >>> decision.actions, decision.thought
    ([Click(type='click', x=960, y=600, button='left', keys=[])], 'Open the menu.')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..actions import Action
from ..coords import Mapper
from ..domain import Act, Ask, Decision, Done, Fail, Retry
from ._parse_text import MAX_REFUSAL_CHARS, batch_problem, cut
from ._tools import ASK_USER, DONE, ToolCallError, parse_call, to_screen

__all__ = ["IGNORED_FINAL", "NO_TOOL_CALL", "ChatCall", "ChatReading", "parse", "read"]

_MAX_THOUGHT = 20_000

NO_TOOL_CALL = (
    "Reply with a tool call: the next action(s), `done` with the report when the task is "
    "finished, `fail` with the reason when it cannot be done, or `ask_user` with a question "
    "only the person who gave you the task can answer."
)
"""What a reply without a tool call is answered with."""
IGNORED_FINAL = (
    "ignored: `{name}` must be called alone, once you have seen the results of your actions; "
    "call it again then"
)
"""The answer to a ``done``/``fail``/``ask_user`` sent along with actions."""


@dataclass
class ChatCall:
    """One tool call of a reply, as the model sent it, and what became of it."""

    id: str
    """The model's id for it ("" when it gave none)."""
    name: str
    arguments: str
    action: int | None = None
    """Index of the action this call became, in the decision's actions."""
    note: str | None = None
    """The answer to a call that was not carried out as an action."""
    asks: bool = False
    """An ``ask_user`` call: the person's answer is its result."""


@dataclass
class ChatReading:
    """All a reply says: the decision, and what the actor needs to answer its calls."""

    decision: Decision
    content: str | None = None
    """The message's text (the thought), as sent."""
    calls: list[ChatCall] = field(default_factory=list)
    """Every tool call of the reply, in order."""
    errors: dict[int, str] = field(default_factory=dict)
    """What was wrong with invalid calls, by index in ``calls`` (then ``Retry``)."""
    problem: str | None = None
    """For a ``Retry``: the reason in short, for the error once retries are spent."""
    refusal: str | None = None
    """The model's refusal, if it refused (then ``Fail``)."""


def _text(content: Any) -> str | None:
    if isinstance(content, str):
        return content or None
    if isinstance(content, list):  # content parts: join the text ones
        texts = [
            str(p.get("text") or "")
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        ]
        return "".join(texts) or None
    return None


def read(reply: Any, mapper: Mapper) -> ChatReading:
    """Everything a chat completion (the parsed JSON body) says; see the module docstring."""
    choices = reply.get("choices") if isinstance(reply, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        problem = "the reply had no choices"
        return ChatReading(Retry(error=f"{problem}. {NO_TOOL_CALL}"), problem=problem)
    choice: dict[str, Any] = choices[0]
    found = choice.get("message")
    message: dict[str, Any] = found if isinstance(found, dict) else {}
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        refusal = cut(refusal, MAX_REFUSAL_CHARS)
        return ChatReading(Fail(reason=f"the model refused to act: {refusal}"), refusal=refusal)
    content = _text(message.get("content"))
    thought = content[:_MAX_THOUGHT] if content else None
    raw = message.get("tool_calls")
    raw = [tc for tc in raw if isinstance(tc, dict)] if isinstance(raw, list) else []
    if not raw:
        problem = "the reply called no tool"
        if choice.get("finish_reason") == "length":
            problem += " (it was cut off at the token limit)"
        return ChatReading(
            Retry(error=NO_TOOL_CALL, thought=thought), content=content, problem=problem
        )
    calls: list[ChatCall] = []
    actions: list[Action] = []
    finals: list[tuple[ChatCall, str, str]] = []
    errors: dict[int, str] = {}
    for i, tc in enumerate(raw):
        fn = tc.get("function")
        named = fn if isinstance(fn, dict) else tc.get("custom")
        name = str((named or {}).get("name") or "") if isinstance(named, dict) else ""
        arguments = fn.get("arguments") if isinstance(fn, dict) else None
        call = ChatCall(
            id=str(tc.get("id") or ""),
            name=name,
            arguments=arguments if isinstance(arguments, str) and arguments else "{}",
        )
        calls.append(call)
        try:
            if not isinstance(fn, dict):
                raise ToolCallError(f"{name!r} is not a function tool")
            parsed = parse_call(name, call.arguments)
            if not isinstance(parsed, tuple):
                parsed = to_screen(parsed, mapper)
        except ValueError as e:  # ToolCallError, OutOfSpaceError
            errors[i] = str(e)
            continue
        if isinstance(parsed, tuple):
            finals.append((call, parsed[0], parsed[1]))
        else:
            call.action = len(actions)
            actions.append(parsed)
    if len({kind for _, kind, _ in finals}) > 1:
        errors.update(
            {calls.index(c): "call only one of `done`, `fail` and `ask_user`" for c, _, _ in finals}
        )
    if (too_much := batch_problem(actions)) is not None:
        errors[len(calls) - 1] = too_much
    if errors:
        problem = cut("; ".join(errors.values()))
        return ChatReading(
            Retry(error=problem, thought=thought),
            content=content,
            calls=calls,
            errors=errors,
            problem=problem,
        )
    decision: Decision
    if actions:
        for call, kind, _ in finals:
            call.note = IGNORED_FINAL.format(name=kind)
        decision = Act(actions=actions, thought=thought)
    else:
        call, kind, text = finals[0]
        if kind == ASK_USER:
            call.asks = True
            decision = Ask(question=text[:20_000], thought=thought)
        elif kind == DONE:
            decision = Done(result=cut(text), thought=thought)
        else:
            decision = Fail(reason=cut(text), thought=thought)
    return ChatReading(decision, content=content, calls=calls)


def parse(reply: Any, mapper: Mapper) -> Decision:
    """The decision of a chat completion calling our tools, in screen pixels."""
    return read(reply, mapper).decision
