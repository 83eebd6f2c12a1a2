"""Acting over Chat Completions: function tools, one conversation rebuilt on every step.

Each request is the whole episode, rebuilt from ``ctx.history``::

    system     who I am and how to work with the tools
    user       the task (and prerequisite results) + the first screenshot
    assistant  tool_calls of step 1          (the ids the model gave them)
    tool       one message per call: the ActionResult as JSON
    user       the screenshot after step 1
    ...        (one assistant/tool/user group per step)
    user       the current screenshot

Only the latest ``max_screenshots`` screenshots are sent as images; older ones become a
line of text, which bounds the context. A call that was not carried out (an earlier action
of its step failed; ``done`` sent along with actions) is answered with why not.

A reply that cannot be used (no tool call, an unknown tool, invalid arguments) is answered
in the conversation with what was wrong, and asked again up to ``max_retries`` times; then
``BrainError``. A refusal raises ``BrainError`` at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..actions import Action
from ..domain import Act, Decision, Done, Fail
from ..errors import BrainError
from ._base import BrainContext, Observation, StepRecord
from ._client import ModelClient
from ._tools import FAIL, ToolCallError, action_arguments, chat_tools, parse_call, result_text

__all__ = ["ChatActor"]

_MAX_THOUGHT = 20_000

NOT_CARRIED_OUT = "not carried out: an earlier action of this step failed"
IGNORED_FINAL = (
    "ignored: `{name}` must be called alone, once you have seen the results of your actions; "
    "call it again then"
)
NO_TOOL_CALL = (
    "Reply with a tool call: the next action(s), `done` with the report when the task is "
    "finished, or `fail` with the reason when it cannot be done."
)


@dataclass
class _Call:
    id: str
    name: str
    arguments: str
    action: int | None
    """Index of the action this call became, in the decision's actions."""
    note: str | None = None
    """The answer to a call that was not carried out as an action."""


@dataclass
class _Turn:
    decision: Act
    content: str | None
    calls: list[_Call]
    obs: Observation | None
    """The screen the decision was made on; dropped once too old to be sent again."""


def _image(obs: Observation) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": obs.data_url()}}


def _assistant(content: str | None, calls: list[_Call]) -> dict[str, Any]:
    # content may be null only alongside tool calls
    message: dict[str, Any] = {"role": "assistant", "content": content or (None if calls else "")}
    if calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in calls
        ]
    return message


def _tool(call_id: str, content: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": content}


class ChatActor:
    """The step loop's decisions over Chat Completions, for one task."""

    def __init__(self, client: ModelClient, *, max_retries: int, max_screenshots: int) -> None:
        self._client = client
        self._max_retries = max_retries
        self._max_screenshots = max(1, max_screenshots)
        self._turns: list[_Turn] = []

    async def decide(
        self, ctx: BrainContext, obs: Observation, *, instructions: str, task: str
    ) -> Decision:
        """The next step: ``Act``, ``Done`` or ``Fail``."""
        messages = self._messages(ctx, obs, instructions, task)
        tools = chat_tools()
        problem = "no reply"
        for _ in range(self._max_retries + 1):
            completion = await self._client.chat(messages=messages, tools=tools)
            if not completion.choices:
                problem = "the reply had no choices"
                continue
            choice = completion.choices[0]
            message = choice.message
            if message.refusal:
                raise BrainError(f"the model refused to act: {message.refusal}")
            content = message.content or None
            raw = [c for c in message.tool_calls or []]
            if not raw:
                problem = "the reply called no tool"
                if choice.finish_reason == "length":
                    problem += " (it was cut off at the token limit)"
                messages += [_assistant(content, []), {"role": "user", "content": NO_TOOL_CALL}]
                continue
            calls: list[_Call] = []
            actions: list[Action] = []
            finals: list[tuple[_Call, str, str]] = []
            errors: dict[int, str] = {}
            for i, tc in enumerate(raw):
                fn = getattr(tc, "function", None)
                name = str(getattr(fn or getattr(tc, "custom", None), "name", None) or "")
                arguments = getattr(fn, "arguments", None) or "{}"
                call = _Call(
                    id=tc.id or f"call_{len(self._turns)}_{i}",
                    name=name,
                    arguments=arguments,
                    action=None,
                )
                calls.append(call)
                try:
                    if fn is None:
                        raise ToolCallError(f"{name!r} is not a function tool")
                    parsed = parse_call(name, arguments)
                except ToolCallError as e:
                    errors[i] = str(e)
                    continue
                if isinstance(parsed, tuple):
                    finals.append((call, parsed[0], parsed[1]))
                else:
                    call.action = len(actions)
                    actions.append(parsed)
            if len({kind for _, kind, _ in finals}) > 1:
                errors.update(
                    {calls.index(c): "call either `done` or `fail`, not both" for c, _, _ in finals}
                )
            if errors:
                problem = "; ".join(errors.values())
                messages.append(_assistant(content, calls))
                messages += [
                    _tool(
                        c.id,
                        errors.get(
                            i,
                            "not carried out: another call of this reply "
                            "was invalid; send the corrected reply again",
                        ),
                    )
                    for i, c in enumerate(calls)
                ]
                continue
            thought = content[:_MAX_THOUGHT] if content else None
            if not actions:
                _, kind, text = finals[0]
                if kind == FAIL:
                    return Fail(reason=text, thought=thought)
                return Done(result=text, thought=thought)
            for call, kind, _ in finals:
                call.note = IGNORED_FINAL.format(name=kind)
            decision = Act(actions=actions, thought=thought)
            self._turns.append(_Turn(decision=decision, content=content, calls=calls, obs=obs))
            # the next request sends its own screen and those of the latest turns only
            for old in self._turns[: len(self._turns) - (self._max_screenshots - 1)]:
                old.obs = None
            return decision
        raise BrainError(
            f"no usable step decision after {self._max_retries + 1} attempt(s): {problem}"
        )

    def _turn(self, record: StepRecord) -> _Turn | None:
        for turn in reversed(self._turns):
            if turn.decision is record.decision:
                return turn
        return None

    def _messages(
        self, ctx: BrainContext, obs: Observation, instructions: str, task: str
    ) -> list[dict[str, Any]]:
        turns = [self._turn(r) for r in ctx.history]
        # screens[i] is the screen decision i was made on: the first screen, then the one
        # after each step; the last is the current one.
        screens: list[Observation | None] = [t.obs if t else None for t in turns] + [obs]
        keep_from = len(screens) - self._max_screenshots

        def screen(i: int, text: str) -> list[dict[str, Any]]:
            shot = screens[i]
            if shot is None or i < keep_from:
                return [{"type": "text", "text": f"{text} (screenshot omitted)"}]
            return [{"type": "text", "text": text}, _image(shot)]

        messages: list[dict[str, Any]] = [
            {"role": "system", "content": instructions},
            {
                "role": "user",
                "content": [{"type": "text", "text": task}, *screen(0, "The screen now:")],
            },
        ]
        for i, (record, turn) in enumerate(zip(ctx.history, turns, strict=True)):
            if turn is None:
                content = record.decision.thought
                calls = [
                    _Call(id=f"call_h{i}_{j}", name=a.type, arguments=action_arguments(a), action=j)
                    for j, a in enumerate(record.actions)
                ]
            else:
                content, calls = turn.content, turn.calls
            messages.append(_assistant(content, calls))
            for call in calls:
                if call.note is not None:
                    answer = call.note
                elif call.action is not None and call.action < len(record.results):
                    answer = result_text(record.results[call.action])
                else:
                    answer = NOT_CARRIED_OUT
                messages.append(_tool(call.id, answer))
            # the same words whether or not this is the latest screen: earlier requests stay a
            # prefix of later ones (servers cache prompt prefixes)
            messages.append({"role": "user", "content": screen(i + 1, f"After step {i + 1}:")})
        return messages
