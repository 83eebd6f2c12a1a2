"""A planner model for triage and planning, paired with an acting model (Agent-S style).

The strongest computer-use setups pair a general model that decides what to do with a
grounding model that knows where to click. ``BrainConfig.planner`` names the planner;
``with_planner(brain, planner, on_usage=...)`` returns a ``Brain`` whose ``triage`` and
``plan`` go to the planner while ``step``, ``check``, ``image_size`` and ``wants_check`` go
to the acting brain (``close`` closes both; a planner that cannot be made closes the acting
brain before its ``ConfigError`` is raised).

- ``OpenAIPlanner``: an OpenAI-compatible Chat Completions API (``ModelClient``), structured
  output with a ``json_schema`` ``response_format`` and its fallbacks (``_structured``).
- ``AnthropicPlanner``: the Messages API (``AnthropicClient``); the schema is asked for in
  the instructions and the JSON read from the reply's text (``parse_json_reply``).

Endpoints: a planner's ``base_url`` passes ``check_model_url`` unless it is the
environment's own, and the environment's key goes only to the environment's endpoint (the
clients see to both). Usage: the planned brain's ``usage`` holds both models' calls in the
order they were made, and ``on_usage`` sees every one.

Example:
    >>> from orchestrator.brains import make_brain
    >>> from orchestrator.domain import BrainConfig, PlannerConfig
    >>> brain = make_brain(BrainConfig(
    ...     kind="openai", family="uitars", model="UI-TARS-1.5-7B",
    ...     base_url="https://api.openai.com/v1",
    ...     planner=PlannerConfig(model="gpt-4.1", base_url="https://api.openai.com/v1"),
    ... ))
    >>> type(brain).__name__, brain.planner.model
    ('PlannedBrain', 'gpt-4.1')
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel

from ..domain import BrainConfig, Decision, Plan, PlannerConfig, TokenUsage, Triage
from ..errors import BrainError, ConfigError
from ._base import Brain, BrainContext, Observation, UsageCallback
from ._client import ModelClient
from ._prompts import PLAN, TRIAGE, task_text, who
from ._structured import (
    CUT_SHORT,
    PlanReply,
    TriageReply,
    ask_structured,
    json_instructions,
    nudge,
    parse_json_reply,
    plan_from,
)

__all__ = [
    "AnthropicPlanner",
    "OpenAIPlanner",
    "PlannedBrain",
    "Planner",
    "close_after_failure",
    "with_planner",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R", bound=BaseModel)

_MAX_REASON = 4000
_DEFAULT_RETRIES = 2
_MAX_TOKENS = 4096
"""Room for a plan's JSON (the Messages API needs ``max_tokens``)."""


_CLOSING: set[asyncio.Task[None]] = set()
"""Closes started by ``close_after_failure`` inside an event loop, held until done."""


def close_after_failure(close: Callable[[], Awaitable[None]]) -> None:
    """Run ``close`` (a brain's or client's) from a constructor that failed after making a
    client: awaited now without an event loop, else in a task of the running loop (held
    here until it ends). Its own failure is not raised over the constructor's."""

    async def run() -> None:
        try:
            await close()
        except Exception:  # noqa: BLE001 - the constructor's error is the one to raise
            log.warning("closing a client after a failed construction failed", exc_info=True)

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(run())
        return
    task = loop.create_task(run())
    _CLOSING.add(task)
    task.add_done_callback(_CLOSING.discard)


def _triage_from(reply: TriageReply) -> Triage:
    return Triage(decision=reply.decision, reason=reply.reason[:_MAX_REASON])


@runtime_checkable
class Planner(Protocol):
    """Triage and planning by a model of its own."""

    usage: list[TokenUsage]
    """Token use of every call this planner made, in order."""

    @property
    def model(self) -> str:
        """The planner's model."""
        ...

    async def triage(self, ctx: BrainContext, obs: Observation) -> Triage:
        """Do the task myself or delegate it."""
        ...

    async def plan(self, ctx: BrainContext, obs: Observation) -> Plan:
        """The subtasks of a delegated task."""
        ...

    async def close(self) -> None:
        """Release the client's connections."""
        ...


class _Usage:
    """Records a planner's usage and passes it on."""

    def __init__(self, on_usage: UsageCallback | None) -> None:
        self.usage: list[TokenUsage] = []
        self._on_usage = on_usage

    def _record(self, usage: TokenUsage) -> None:
        self.usage.append(usage)
        if self._on_usage is not None:
            self._on_usage(usage)


def _brain_config(planner: PlannerConfig, kind: str) -> BrainConfig:
    return BrainConfig.model_validate(
        {
            "kind": kind,
            "model": planner.model,
            "base_url": planner.base_url,
            "api_key": planner.api_key,
        }
    )


class OpenAIPlanner(_Usage):
    """Plans with a model behind an OpenAI-compatible Chat Completions API.

    Example:
        >>> p = OpenAIPlanner(PlannerConfig(model="gpt-4.1", base_url="https://api.openai.com/v1"))
        >>> p.model
        'gpt-4.1'
    """

    def __init__(
        self,
        config: PlannerConfig,
        *,
        on_usage: UsageCallback | None = None,
        max_retries: int = _DEFAULT_RETRIES,
        client: Any = None,
    ) -> None:
        """``client`` (an ``openai.AsyncOpenAI``) replaces the one built from the config."""
        super().__init__(on_usage)
        self._client = ModelClient(
            _brain_config(config, "openai"), client=client, on_usage=self._record
        )
        self._max_retries = max_retries

    @property
    def model(self) -> str:
        return self._client.model

    async def triage(self, ctx: BrainContext, obs: Observation) -> Triage:
        return await ask_structured(
            self._client,
            mode="chat",
            instructions=f"{who(ctx, obs)} {TRIAGE}",
            text=task_text(ctx),
            obs=obs,
            name="triage",
            reply_model=TriageReply,
            convert=_triage_from,
            max_retries=self._max_retries,
        )

    async def plan(self, ctx: BrainContext, obs: Observation) -> Plan:
        return await ask_structured(
            self._client,
            mode="chat",
            instructions=f"{who(ctx, obs)} {PLAN}",
            text=task_text(ctx),
            obs=obs,
            name="plan",
            reply_model=PlanReply,
            convert=plan_from,
            max_retries=self._max_retries,
        )

    async def close(self) -> None:
        await self._client.close()


class AnthropicPlanner(_Usage):
    """Plans with Claude over the Messages API: the schema in the instructions, the JSON read
    from the reply's text, a bad reply answered with the problem and asked again.

    Example:
        >>> p = AnthropicPlanner(PlannerConfig(api="anthropic", model="claude-x", api_key="k"))
        >>> p.model
        'claude-x'
    """

    def __init__(
        self,
        config: PlannerConfig,
        *,
        on_usage: UsageCallback | None = None,
        max_retries: int = _DEFAULT_RETRIES,
        max_tokens: int = _MAX_TOKENS,
        client: Any = None,
    ) -> None:
        """``client`` (an ``anthropic.AsyncAnthropic``) replaces the one built from the config."""
        super().__init__(on_usage)
        from ._anthropic_client import AnthropicClient  # the SDK loads only for this planner

        self._client = AnthropicClient(
            _brain_config(config, "anthropic"), on_usage=self._record, client=client
        )
        self._max_retries = max_retries
        self._max_tokens = max_tokens

    @property
    def model(self) -> str:
        return self._client.model

    async def triage(self, ctx: BrainContext, obs: Observation) -> Triage:
        return await self._ask(
            f"{who(ctx, obs)} {TRIAGE}", ctx, obs, "triage", TriageReply, _triage_from
        )

    async def plan(self, ctx: BrainContext, obs: Observation) -> Plan:
        return await self._ask(f"{who(ctx, obs)} {PLAN}", ctx, obs, "plan", PlanReply, plan_from)

    async def _ask(
        self,
        instructions: str,
        ctx: BrainContext,
        obs: Observation,
        name: str,
        reply_model: type[R],
        convert: Callable[[R], T],
    ) -> T:
        image = {
            "type": "image",
            "source": {
                "type": "base64",
                "media_type": obs.media_type,
                "data": base64.b64encode(obs.screenshot).decode(),
            },
        }
        messages: list[dict[str, Any]] = [
            {"role": "user", "content": [{"type": "text", "text": task_text(ctx)}, image]}
        ]
        system = instructions + json_instructions(reply_model)
        problem = "no reply"
        for _ in range(self._max_retries + 1):
            reply = await self._client.create(
                system=system, messages=messages, max_tokens=self._max_tokens
            )
            if reply.get("stop_reason") == "refusal":
                raise BrainError(f"the model refused the {name} decision")
            text = "".join(
                str(block.get("text") or "")
                for block in reply.get("content") or []
                if isinstance(block, dict) and block.get("type") == "text"
            )
            try:
                return parse_json_reply(text, reply_model, convert)
            except ValueError as e:
                problem = str(e)
            if reply.get("stop_reason") == "max_tokens":
                problem += f" ({CUT_SHORT})"
            messages += [
                {"role": "assistant", "content": text or "(empty)"},
                {"role": "user", "content": nudge(problem)},
            ]
        raise BrainError(
            f"no usable {name} decision after {self._max_retries + 1} attempt(s): {problem}"
        )

    async def close(self) -> None:
        await self._client.close()


class PlannedBrain(Brain):
    """A brain whose triage and planning go to a ``Planner`` and whose acting goes to
    another brain; made by ``with_planner``.

    ``planner`` is made with the recorder of this brain's usage (its calls are appended to
    the same list as the actor's, and passed to ``on_usage``).
    """

    def __init__(
        self,
        actor: Brain,
        planner: Callable[[UsageCallback], Planner],
        *,
        on_usage: UsageCallback | None,
    ) -> None:
        super().__init__(on_usage=on_usage)
        self.usage = actor.usage  # one list, in call order: the actor appends to it too
        self.actor = actor
        """The brain that acts (step, check)."""
        try:
            self.planner: Planner = planner(self._record_usage)
        except BaseException:  # the acting brain's client is this brain's to close now
            close_after_failure(actor.close)
            raise
        """The model that triages and plans."""
        self._check: str | None = None

    async def triage(self, ctx: BrainContext, obs: Observation) -> Triage:
        return await self.planner.triage(ctx, obs)

    async def plan(self, ctx: BrainContext, obs: Observation) -> Plan:
        plan = await self.planner.plan(ctx, obs)
        self._check = plan.check
        return plan

    async def step(self, ctx: BrainContext, obs: Observation) -> Decision:
        return await self.actor.step(ctx, obs)

    async def check(self, ctx: BrainContext, obs: Observation, results: dict[str, str]) -> Decision:
        if self._check:
            # the acting brain did not make the plan: it is told what the planner would check
            # (same history list, so the runner's records still reach it)
            ctx = dataclasses.replace(
                ctx, description=f"{ctx.description}\n\nWhat to verify: {self._check}"
            )
        return await self.actor.check(ctx, obs, results)

    def image_size(self, screen: tuple[int, int]) -> tuple[int, int]:
        return self.actor.image_size(screen)

    def wants_check(self) -> bool:
        return self.actor.wants_check()

    def take_notes(self) -> list[str]:
        return self.actor.take_notes()

    async def close(self) -> None:
        try:
            await self.planner.close()
        finally:
            await self.actor.close()


def with_planner(
    brain: Brain,
    planner: PlannerConfig,
    *,
    on_usage: UsageCallback | None = None,
    max_retries: int | None = None,
) -> Brain:
    """``brain`` with triage and planning moved to ``planner``'s model.

    ``on_usage`` must be the one ``brain`` was made with: the planner's calls are appended to
    ``brain.usage`` (the planned brain's too) and passed to it, as the actor's already are.
    ``max_retries`` defaults to the acting brain's config's. Raises ``ConfigError`` when the
    planner's endpoint is not allowed or it has no model or key.
    """
    if max_retries is None:
        config = getattr(brain, "config", None)
        max_retries = config.max_retries if isinstance(config, BrainConfig) else _DEFAULT_RETRIES
    retries = max_retries

    def make(record: UsageCallback) -> Planner:
        try:
            if planner.api == "anthropic":
                return AnthropicPlanner(planner, on_usage=record, max_retries=retries)
            return OpenAIPlanner(planner, on_usage=record, max_retries=retries)
        except ConfigError as e:  # say which endpoint: the planner's, not the brain's
            raise ConfigError(str(e).replace("brain.base_url", "brain.planner.base_url")) from None

    return PlannedBrain(brain, make, on_usage=on_usage)
