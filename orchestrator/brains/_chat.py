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
line of text, which bounds the context. A question (``ask_user``, an ``Ask``) is answered
with the person's answer as the call's result. A call that was not carried out (an earlier action
of its step failed; ``done`` sent along with actions) is answered with why not.

A reply that cannot be used (no tool call, an unknown tool, invalid arguments) is answered
in the conversation with what was wrong, and asked again up to ``max_retries`` times; then
``BrainError``. A refusal raises ``BrainError`` at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..coords import CoordinateSpace, Mapper, NativeSpace, model_size
from ..domain import Act, Ask, Decision, Retry
from ..errors import BrainError
from ._base import BrainContext, Observation, StepRecord
from ._client import ModelClient
from ._parse_chat import NO_TOOL_CALL, ChatCall, read
from ._tools import ASK_USER, action_arguments, chat_tools, result_text, to_model

__all__ = ["ChatActor"]

NOT_CARRIED_OUT = "not carried out: an earlier action of this step failed"
_INVALID_SIBLING = (
    "not carried out: another call of this reply was invalid; send the corrected reply again"
)


@dataclass
class _Turn:
    decision: Act | Ask
    content: str | None
    calls: list[ChatCall]
    obs: Observation | None
    """The screen the decision was made on; dropped once too old to be sent again."""


def _image(obs: Observation) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": obs.data_url()}}


def _assistant(content: str | None, calls: list[ChatCall]) -> dict[str, Any]:
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

    def __init__(
        self,
        client: ModelClient,
        *,
        max_retries: int,
        max_screenshots: int,
        space: CoordinateSpace | None = None,
    ) -> None:
        """``space``: the coordinate space of the model's replies (default: screen pixels)."""
        self._client = client
        self._max_retries = max_retries
        self._max_screenshots = max(1, max_screenshots)
        self._space = space or NativeSpace()
        self._turns: list[_Turn] = []

    async def decide(
        self, ctx: BrainContext, obs: Observation, *, instructions: str, task: str
    ) -> Decision:
        """The next step: ``Act``, ``Done`` or ``Fail``."""
        mapper = Mapper(model_size(self._space, obs.screen_size), obs.screen_size)
        messages = self._messages(ctx, obs, instructions, task, mapper)
        tools = chat_tools()
        problem = "no reply"
        for _ in range(self._max_retries + 1):
            reply = await self._client.chat_body(messages=messages, tools=tools)
            reading = read(reply, mapper)
            if reading.refusal is not None:
                raise BrainError(f"the model refused to act: {reading.refusal}")
            calls = reading.calls
            for i, call in enumerate(calls):
                call.id = call.id or f"call_{len(self._turns)}_{i}"
            decision = reading.decision
            if isinstance(decision, Retry):
                problem = reading.problem or decision.error
                if not calls:
                    messages += [
                        _assistant(reading.content, []),
                        {"role": "user", "content": NO_TOOL_CALL},
                    ]
                    continue
                messages.append(_assistant(reading.content, calls))
                messages += [
                    _tool(c.id, reading.errors.get(i, _INVALID_SIBLING))
                    for i, c in enumerate(calls)
                ]
                continue
            if isinstance(decision, Act | Ask):
                turn = _Turn(decision=decision, content=reading.content, calls=calls, obs=obs)
                self._turns.append(turn)
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
        self, ctx: BrainContext, obs: Observation, instructions: str, task: str, mapper: Mapper
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
            if turn is None and isinstance(record.decision, Ask):
                content = record.decision.thought
                question = json.dumps({"question": record.decision.question})
                calls = [ChatCall(id=f"call_h{i}_0", name=ASK_USER, arguments=question, asks=True)]
            elif turn is None:
                content = record.decision.thought
                calls = [
                    ChatCall(
                        id=f"call_h{i}_{j}",
                        name=a.type,
                        arguments=action_arguments(to_model(a, mapper)),
                        action=j,
                    )
                    for j, a in enumerate(record.actions)
                ]
            else:
                content, calls = turn.content, turn.calls
            messages.append(_assistant(content, calls))
            for call in calls:
                if call.note is not None:
                    answer = call.note
                elif call.asks:
                    answer = f"The person answered: {record.answer or '(no answer)'}"
                elif call.action is not None and call.action < len(record.results):
                    answer = result_text(record.results[call.action], mapper)
                else:
                    answer = NOT_CARRIED_OUT
                messages.append(_tool(call.id, answer))
            # the same words whether or not this is the latest screen: earlier requests stay a
            # prefix of later ones (servers cache prompt prefixes)
            messages.append({"role": "user", "content": screen(i + 1, f"After step {i + 1}:")})
        return messages
