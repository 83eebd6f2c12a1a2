"""A brain driven by a model behind an OpenAI-compatible API (OpenAI, vLLM, Ollama, gateways).

- Triage and plan: structured JSON replies validated with pydantic and retried when bad
  (``_structured``), over Chat Completions in mode ``chat`` and over the Responses API in
  mode ``responses`` (computer-use models speak only that API).
- Acting: family ``chat-tools`` (mode ``chat``) uses Chat Completions with one function tool
  per action type (``_chat``); family ``openai-responses`` (mode ``responses``) uses the
  Responses API's computer tool (``_responses``).
- Coordinates: the brain's space (``space_of(config)``: native unless the config names
  another) sizes the screenshots (``image_size``) and maps every point of a reply back to
  screen pixels.
"""

from __future__ import annotations

from typing import Literal

import openai

from .. import coords
from ..domain import BrainConfig, Decision, Plan, Triage
from ..errors import ConfigError
from ..policy import SafetyChecks
from ._base import Brain, BrainContext, Observation, UsageCallback
from ._chat import ChatActor
from ._client import ModelClient
from ._prompts import PLAN, TRIAGE, acting_instructions, check_text, task_text, who
from ._responses import ResponsesActor
from ._spaces import space_of
from ._structured import PlanReply, TriageReply, ask_structured, plan_from

__all__ = ["OpenAIBrain"]

_MAX_REASON = 4000


def _triage_from(reply: TriageReply) -> Triage:
    return Triage(decision=reply.decision, reason=reply.reason[:_MAX_REASON])


class OpenAIBrain(Brain):
    """Decides with a model over the OpenAI API; one brain per task.

    Example:
        >>> from orchestrator.domain import BrainConfig
        >>> brain = OpenAIBrain(
        ...     BrainConfig(kind="openai", model="gpt-4.1", base_url="http://127.0.0.1:8001/v1")
        ... )
        >>> brain.model
        'gpt-4.1'
    """

    def __init__(
        self,
        config: BrainConfig,
        *,
        client: openai.AsyncOpenAI | None = None,
        on_usage: UsageCallback | None = None,
        max_screenshots: int = 3,
        safety_checks: SafetyChecks = "fail",
    ) -> None:
        """``client`` replaces the one built from the config (it is then not closed here);
        ``max_screenshots`` bounds the images sent per request in mode ``chat``;
        ``safety_checks``: what to do with pending safety checks in mode ``responses`` (the
        agent's ``ApprovalPolicy.safety_checks``)."""
        super().__init__(on_usage=on_usage)
        self.config = config
        self._client = ModelClient(config, client=client, on_usage=self._record_usage)
        self._space = space_of(config)
        if isinstance(self._space, coords.NormSpace) and self._space.scale == 1:
            raise ConfigError(
                "a 0..1 coordinate space needs fractional coordinates, which neither our "
                "function tools nor OpenAI's computer tool take (integers): use another space"
            )
        self._responses = config.resolved_family == "openai-responses"
        self._mode: Literal["chat", "responses"] = "responses" if self._responses else "chat"
        self._actor: ChatActor | ResponsesActor
        if self._responses:
            self._actor = ResponsesActor(
                self._client,
                max_retries=config.max_retries,
                space=self._space,
                safety_checks=safety_checks,
                note=self._note,
            )
        else:
            self._actor = ChatActor(
                self._client,
                max_retries=config.max_retries,
                max_screenshots=config.max_images or max_screenshots,
                space=self._space,
            )
        self._check: str | None = None

    @property
    def model(self) -> str:
        """The model asked on every call."""
        return self._client.model

    def image_size(self, screen: tuple[int, int]) -> tuple[int, int]:
        """The screenshots' size in the brain's coordinate space (the screen's by default)."""
        return coords.image_size(self._space, screen)

    async def triage(self, ctx: BrainContext, obs: Observation) -> Triage:
        return await ask_structured(
            self._client,
            mode=self._mode,
            instructions=f"{who(ctx, obs)} {TRIAGE}",
            text=task_text(ctx),
            obs=obs,
            name="triage",
            reply_model=TriageReply,
            convert=_triage_from,
            max_retries=self.config.max_retries,
        )

    async def plan(self, ctx: BrainContext, obs: Observation) -> Plan:
        plan = await ask_structured(
            self._client,
            mode=self._mode,
            instructions=f"{who(ctx, obs)} {PLAN}",
            text=task_text(ctx),
            obs=obs,
            name="plan",
            reply_model=PlanReply,
            convert=plan_from,
            max_retries=self.config.max_retries,
        )
        self._check = plan.check
        return plan

    def _instructions(self, ctx: BrainContext, obs: Observation) -> str:
        text = acting_instructions(ctx, obs, computer_tool=self._responses)
        if isinstance(self._space, coords.NormSpace):  # not pixels: say so
            text += (
                " Give every coordinate as a fraction of the screenshot's width and height "
                "scaled to 0..1000 (0,0 is the top left corner, 1000,1000 the bottom right), "
                "not in pixels."
            )
        return text

    async def step(self, ctx: BrainContext, obs: Observation) -> Decision:
        return await self._actor.decide(
            ctx, obs, instructions=self._instructions(ctx, obs), task=task_text(ctx)
        )

    async def check(self, ctx: BrainContext, obs: Observation, results: dict[str, str]) -> Decision:
        return await self._actor.decide(
            ctx,
            obs,
            instructions=self._instructions(ctx, obs),
            task=check_text(ctx, results, self._check),
        )

    async def close(self) -> None:
        await self._client.close()
