"""A brain driven by a model behind an OpenAI-compatible API (OpenAI, vLLM, Ollama, gateways).

- Triage and plan: structured JSON replies validated with pydantic and retried when bad
  (``_structured``), over Chat Completions in mode ``chat`` and over the Responses API in
  mode ``responses`` (computer-use models speak only that API).
- Acting: mode ``chat`` uses Chat Completions with one function tool per action type
  (``_chat``); mode ``responses`` uses the Responses API's computer tool (``_responses``).
"""

from __future__ import annotations

import openai

from ..domain import BrainConfig, Decision, Plan, Triage
from ._base import Brain, BrainContext, Observation, UsageCallback
from ._chat import ChatActor
from ._client import ModelClient
from ._prompts import PLAN, TRIAGE, acting_instructions, check_text, task_text, who
from ._responses import ResponsesActor
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
    ) -> None:
        """``client`` replaces the one built from the config (it is then not closed here);
        ``max_screenshots`` bounds the images sent per request in mode ``chat``."""
        super().__init__(on_usage=on_usage)
        self.config = config
        self._client = ModelClient(config, client=client, on_usage=self._record_usage)
        self._actor: ChatActor | ResponsesActor
        if config.mode == "chat":
            self._actor = ChatActor(
                self._client, max_retries=config.max_retries, max_screenshots=max_screenshots
            )
        else:
            self._actor = ResponsesActor(self._client, max_retries=config.max_retries)
        self._check: str | None = None

    @property
    def model(self) -> str:
        """The model asked on every call."""
        return self._client.model

    async def triage(self, ctx: BrainContext, obs: Observation) -> Triage:
        return await ask_structured(
            self._client,
            mode=self.config.mode,
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
            mode=self.config.mode,
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

    async def step(self, ctx: BrainContext, obs: Observation) -> Decision:
        return await self._actor.decide(
            ctx,
            obs,
            instructions=acting_instructions(ctx, obs, computer_tool=self.config.mode != "chat"),
            task=task_text(ctx),
        )

    async def check(self, ctx: BrainContext, obs: Observation, results: dict[str, str]) -> Decision:
        return await self._actor.decide(
            ctx,
            obs,
            instructions=acting_instructions(ctx, obs, computer_tool=self.config.mode != "chat"),
            task=check_text(ctx, results, self._check),
        )

    async def close(self) -> None:
        await self._client.close()
