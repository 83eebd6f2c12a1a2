"""How an agent's brain is configured: its model family, endpoint, coordinate space and an
optional planner (re-exported by ``orchestrator.domain``).

Example:
    >>> BrainConfig(kind="anthropic").resolved_family
    'anthropic'
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_serializer, model_validator

from .coords import CoordinateSpace

__all__ = ["FAMILIES", "BrainConfig", "Family", "PlannerConfig"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


Family = Literal["chat-tools", "openai-responses", "anthropic", "uitars", "qwen-vl", "opencua"]
"""How a model speaks computer use:

- ``chat-tools``: Chat Completions with our function tools (any OpenAI-compatible server);
- ``openai-responses``: OpenAI's Responses API with its computer tool;
- ``anthropic``: Claude's computer, bash and text-editor tools over the Messages API;
- ``uitars``: UI-TARS's ``Thought: ... Action: click(start_box='(x,y)')`` text;
- ``qwen-vl``: Qwen2.5-VL/Qwen3-VL's ``<tool_call>{...}</tool_call>`` text;
- ``opencua``: OpenCUA's pyautogui code (parsed, never executed).
"""

FAMILIES: tuple[Family, ...] = (
    "chat-tools",
    "openai-responses",
    "anthropic",
    "uitars",
    "qwen-vl",
    "opencua",
)


class PlannerConfig(_Model):
    """A separate model for triage and planning; the brain's own model then only acts
    (a general planner paired with a grounding model, as Agent-S does).

    Example:
        >>> PlannerConfig(model="gpt-4.1").api
        'openai'
    """

    api: Literal["openai", "anthropic"] = "openai"
    """``openai``: an OpenAI-compatible Chat Completions API; ``anthropic``: the Messages API."""
    model: Annotated[str, Field(min_length=1, max_length=200)]
    """The planner's model."""
    base_url: str | None = None
    """Its API's base URL; default the environment's (``OPENAI_BASE_URL`` or
    ``ANTHROPIC_BASE_URL``), else the vendor's. Must be allowed like the brain's."""
    api_key: SecretStr | None = None
    """Its key; the environment's key only goes to the environment's endpoint."""

    @field_serializer("api_key", when_used="json")
    def _no_key_in_json(self, _: SecretStr | None) -> None:
        return None


class BrainConfig(_Model):
    """Which brain drives an agent, and how to reach its model.

    Example:
        >>> BrainConfig(kind="openai", model="gpt-4.1", base_url="http://127.0.0.1:8001/v1").mode
        'chat'
        >>> BrainConfig(kind="openai", family="uitars", model="ui-tars-1.5-7b").resolved_family
        'uitars'
    """

    kind: Literal["scripted", "openai", "anthropic"] = "scripted"
    """``openai``: a model behind an OpenAI-compatible API (OpenAI, vLLM, SGLang, Ollama, a
    gateway); ``anthropic``: Claude over the Messages API; ``scripted``: a YAML plan."""
    family: Family | None = None
    """How the model speaks computer use; default ``anthropic`` for kind ``anthropic``, else
    from ``mode`` (``chat-tools`` or ``openai-responses``). ``uitars``, ``qwen-vl`` and
    ``opencua`` are open models over an OpenAI-compatible server (no ``tools`` sent)."""
    model: str | None = None
    """Model name; default ``ORCHESTRATOR_MODEL`` from the environment."""
    base_url: str | None = None
    """API base URL; default ``OPENAI_BASE_URL`` (``ANTHROPIC_BASE_URL`` for ``anthropic``)."""
    api_key: SecretStr | None = None
    """API key; default ``OPENAI_API_KEY`` (``ANTHROPIC_API_KEY``), but only for the
    environment's own endpoint: a brain with another ``base_url`` sends its own key or none.
    Never logged or stored in records."""
    mode: Literal["chat", "responses"] = "chat"
    """For kind ``openai`` without a ``family``: ``chat`` is ``chat-tools``, ``responses`` is
    ``openai-responses``."""
    space: CoordinateSpace | None = None
    """The model's coordinate space; default the family's (by model name where versions
    differ, e.g. UI-TARS-1.0 and Qwen3-VL answer in 0..1000)."""
    planner: PlannerConfig | None = None
    """A separate model for triage and planning; default the brain's own model."""
    max_images: Annotated[int, Field(ge=1, le=50)] | None = None
    """Screenshots kept in the model's context; default the family's."""
    max_tokens: Annotated[int, Field(ge=16, le=200_000)] | None = None
    """Most tokens per reply, where the API needs a number (Anthropic); default the family's."""
    max_retries: Annotated[int, Field(ge=0, le=10)] = 2
    """How often a malformed reply is retried before the task fails (refusals fail at once)."""
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    """Sampling temperature, when the server accepts one."""
    script: dict[str, Any] | None = None
    """For ``scripted``: this agent's part of the plan (format: ``orchestrator.brains.Script``)."""

    @model_validator(mode="after")
    def _family_fits_kind(self) -> BrainConfig:
        if self.family is None:
            return self
        if self.kind == "scripted":
            raise ValueError("a scripted brain has no model family")
        if (self.kind == "anthropic") != (self.family == "anthropic"):
            raise ValueError(
                f"family {self.family!r} needs kind "
                f"{'anthropic' if self.family == 'anthropic' else 'openai'}"
            )
        return self

    @property
    def resolved_family(self) -> Family | None:
        """The family this brain speaks; None for a scripted brain."""
        if self.kind == "scripted":
            return None
        if self.family is not None:
            return self.family
        if self.kind == "anthropic":
            return "anthropic"
        return "chat-tools" if self.mode == "chat" else "openai-responses"

    @field_serializer("api_key", when_used="json")
    def _no_key_in_json(self, _: SecretStr | None) -> None:
        """The key is write-only: JSON (API answers, records, logs) never holds it, not even
        masked; Python dumps and pickles (Ray) keep it."""
        return None
