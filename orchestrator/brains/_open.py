"""A brain for the open computer-use models over OpenAI-compatible servers (vLLM, SGLang,
Ollama): UI-TARS (1.0 and 1.5), Qwen2.5-VL and Qwen3-VL, OpenCUA.

These models answer in text, not tool calls: the brain sends no ``tools``, ``tool_choice``
or ``response_format`` (a vLLM server started without tool-calling flags rejects ``tools``,
and Ollama rejects them for qwen2.5vl), only the family's trained prompt and history
(``_open_families``, ``_open_prompts``) with screenshots as ``image_url`` parts, and reads
the reply with the family's parser (``parse_reply``).

Each step:

- the screenshot is in the family's coordinate space (``image_size``: a ``smart_resize``d
  grid for UI-TARS-1.5, Qwen2.5-VL and OpenCUA; 0..1000 replies about a grid image for
  UI-TARS-1.0 and Qwen3-VL; ``BrainConfig.space`` overrides it), and the reply's points are
  mapped to screen pixels by the parser;
- only the latest ``max_images`` screenshots are sent (the family's default unless
  ``BrainConfig.max_images``), the older steps as the family shows them (text);
- what went wrong with the last step's actions (and a person's answer) is told in the next
  user message, cursor positions in the model's space;
- a reply that cannot be used is answered with the error, in the family's words, and asked
  again up to ``max_retries`` times; then ``BrainError``. A refusal is ``BrainError`` at once.

These models act; they do not triage or plan: ``triage`` says ``do``, and ``plan`` raises
``BrainError`` (a ``planner`` in the config does both, see ``_factory``).

Example:
    >>> from orchestrator.domain import BrainConfig
    >>> brain = OpenModelBrain(BrainConfig(kind="openai", family="uitars",
    ...     model="UI-TARS-1.5-7B", base_url="http://127.0.0.1:8000/v1"))
    >>> brain.image_size((1280, 800)), brain.max_images
    ((1288, 812), 5)
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import openai

from .. import coords
from ..actions import CursorPosition
from ..domain import Ask, AwaitApproval, BrainConfig, Decision, Plan, Retry, Triage
from ..errors import BrainError, ConfigError
from ._base import Brain, BrainContext, Observation, StepRecord, UsageCallback
from ._client import ModelClient
from ._open_families import LAYOUTS, Layout, Past
from ._parse import parse_reply
from ._parse_text import MAX_REFUSAL_CHARS, cut
from ._prompts import check_text, task_text
from ._spaces import _QWEN3, _UITARS_1_0, space_of

__all__ = ["OpenModelBrain"]

log = logging.getLogger(__name__)

_MAX_THOUGHT = 20_000


@dataclass
class _Turn:
    decision: Decision
    text: str
    """The model's reply, as it wrote it."""
    obs: Observation | None
    """The screen it decided on; dropped once too old to be sent again."""


class OpenModelBrain(Brain):
    """Acts with an open model (family ``uitars``, ``qwen-vl`` or ``opencua``); one per task."""

    def __init__(
        self,
        config: BrainConfig,
        *,
        client: openai.AsyncOpenAI | None = None,
        on_usage: UsageCallback | None = None,
    ) -> None:
        """``client`` replaces the one built from the config (it is then not closed here)."""
        super().__init__(on_usage=on_usage)
        family = config.resolved_family
        if family not in LAYOUTS:
            raise ConfigError(f"OpenModelBrain speaks {', '.join(LAYOUTS)}, not {family!r}")
        self.config = config
        self.family = family
        self.space = space_of(config)
        """The coordinate space the model answers in."""
        name = config.model or ""
        self._layout_class = LAYOUTS[family]
        # the family's older version, told by its name: UI-TARS-1.0, Qwen2.5-VL
        self._older = bool(
            _UITARS_1_0.search(name)
            if family == "uitars"
            else family == "qwen-vl" and not _QWEN3.search(name)
        )
        self.max_images: int = config.max_images or self._layout_class.default_images
        """Screenshots per request, the current one included."""
        if config.temperature is None and self._layout_class.temperature is not None:
            config = config.model_copy(update={"temperature": self._layout_class.temperature})
        self._client = ModelClient(config, client=client, on_usage=self._record_usage)
        self._turns: list[_Turn] = []

    @property
    def model(self) -> str:
        """The model asked on every call."""
        return self._client.model

    def image_size(self, screen: tuple[int, int]) -> tuple[int, int]:
        return coords.image_size(self.space, screen)

    async def triage(self, ctx: BrainContext, obs: Observation) -> Triage:
        return Triage(
            decision="do",
            reason=f"a {self.family} model acts itself; set a planner to split tasks",
        )

    async def plan(self, ctx: BrainContext, obs: Observation) -> Plan:
        raise BrainError(
            f"a {self.family} model ({self.model}) cannot plan: set the brain's `planner` to a "
            "model that splits tasks into subtasks"
        )

    async def step(self, ctx: BrainContext, obs: Observation) -> Decision:
        return await self._decide(ctx, obs, task_text(ctx))

    async def check(self, ctx: BrainContext, obs: Observation, results: dict[str, str]) -> Decision:
        return await self._decide(ctx, obs, check_text(ctx, results, None))

    async def close(self) -> None:
        await self._client.close()

    # ------------------------------------------------------------------ the loop

    async def _decide(self, ctx: BrainContext, obs: Observation, instruction: str) -> Decision:
        screen = obs.screen_size
        model_size = coords.model_size(self.space, screen)
        if obs.size != coords.image_size(self.space, screen):
            log.warning(
                "%s: screenshot of %dx%d for a %dx%d screen, not the %dx%d of its space; "
                "its points are read in %dx%d",
                self.model,
                *obs.size,
                *screen,
                *coords.image_size(self.space, screen),
                *model_size,
            )
        mapper = coords.Mapper(model_size=model_size, screen_size=screen)
        layout = self._layout_class(display=model_size, older=self._older)
        messages = self._messages(ctx, obs, instruction, layout, mapper)
        params: dict[str, Any] = {}
        if self.config.max_tokens is not None:
            params["max_tokens"] = self.config.max_tokens
        problem = "no reply"
        for _ in range(self.config.max_retries + 1):
            completion = await self._client.chat(messages=messages, **params)
            if not completion.choices:
                problem = "the reply had no choices"
                continue
            choice = completion.choices[0]
            message = choice.message
            if message.refusal:
                refusal = cut(str(message.refusal), MAX_REFUSAL_CHARS)
                raise BrainError(f"the model refused to act: {refusal}")
            text = (message.content or "").strip() or _calls_as_text(message)
            if not text:
                problem = "the reply was empty"
                if choice.finish_reason == "length":
                    problem += " (it was cut off at the token limit)"
                messages.append({"role": "user", "content": layout.retry(problem)})
                continue
            decision = parse_reply(self.family, text, model_size, screen)
            if isinstance(decision, Retry):
                problem = decision.error
                if choice.finish_reason == "length":
                    problem += " (the reply was cut off at the token limit)"
                messages += [
                    {"role": "assistant", "content": text},
                    {"role": "user", "content": layout.retry(problem)},
                ]
                continue
            if decision.thought is not None and len(decision.thought) > _MAX_THOUGHT:
                decision = decision.model_copy(update={"thought": decision.thought[:_MAX_THOUGHT]})
            self._remember(decision, text, obs)
            return decision
        raise BrainError(
            f"no usable step decision from {self.model} after {self.config.max_retries + 1} "
            f"attempt(s): {problem}"
        )

    def _remember(self, decision: Decision, text: str, obs: Observation) -> None:
        self._turns.append(_Turn(decision=decision, text=text, obs=obs))
        # the next request sends its own screen and those of the latest steps only
        for old in self._turns[: max(0, len(self._turns) - (self.max_images - 1))]:
            old.obs = None

    def _turn(self, record: StepRecord) -> _Turn | None:
        for turn in reversed(self._turns):
            if turn.decision is record.decision:
                return turn
        return None

    def _messages(
        self,
        ctx: BrainContext,
        obs: Observation,
        instruction: str,
        layout: Layout,
        mapper: coords.Mapper,
    ) -> list[dict[str, Any]]:
        def point(x: int, y: int) -> tuple[float, float]:
            mx, my = mapper.to_model(x, y)
            if isinstance(self.space, coords.NormSpace) and self.space.scale == 1:
                w, h = mapper.model_size
                return (round(mx / w, 4), round(my / h, 4))
            return (mx, my)

        n = len(ctx.history)
        window = max(0, n - (self.max_images - 1))
        past: list[Past] = []
        for i, record in enumerate(ctx.history):
            turn = self._turn(record)
            text = turn.text if turn else layout.render(record.decision, point)
            screen = turn.obs if turn is not None and i >= window else None
            past.append(Past(text=text, screen=screen, note=_feedback(record, point)))
        return layout.messages(instruction, past, obs, window)


def _feedback(record: StepRecord, point: Any) -> str | None:
    """What the model should know about a step beyond the next screenshot: actions that
    failed or were not carried out, a cursor position asked for, a person's answer."""
    lines: list[str] = []
    for j, action in enumerate(record.actions):
        if j >= len(record.results):
            lines.append(f"Action {j + 1} ({action.type}) was not carried out.")
            continue
        result = record.results[j]
        where = ""
        if result.cursor is not None:
            x, y = point(result.cursor.x, result.cursor.y)
            where = f"({_num(x)}, {_num(y)})"
        if not result.ok:
            lines.append(
                f"Action {j + 1} ({action.type}) failed: {result.error or 'no reason given'}"
                + (f"; the pointer is at {where}" if where else "")
            )
        elif isinstance(action, CursorPosition) and where:
            lines.append(f"The pointer is at {where}.")
    if record.answer is not None:
        if isinstance(record.decision, Ask):
            lines.append(f"The user answered: {record.answer}")
        elif isinstance(record.decision, AwaitApproval):
            lines.append(f"The user's verdict on these actions: {record.answer}")
    return "\n".join(lines) or None


def _calls_as_text(message: Any) -> str:
    """Tool calls a server extracted from the text (a Qwen ``<tool_call>`` that vLLM or Ollama
    parsed on its own) written back as the model wrote them, so the family's parser reads
    them; empty when there are none."""
    calls = []
    for call in getattr(message, "tool_calls", None) or []:
        fn = getattr(call, "function", None)
        if fn is None:
            continue
        try:
            arguments = json.loads(fn.arguments or "{}")
        except (ValueError, RecursionError):  # not JSON, 4,300+ digits, nested too deep
            arguments = fn.arguments
        try:
            call_json = json.dumps({"name": fn.name, "arguments": arguments}, ensure_ascii=False)
        except (ValueError, TypeError, RecursionError):
            call_json = json.dumps({"name": str(fn.name), "arguments": str(fn.arguments)})
        calls.append(f"<tool_call>\n{call_json}\n</tool_call>")
    return "\n".join(calls)


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"
