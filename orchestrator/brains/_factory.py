"""Making the brain a ``BrainConfig`` asks for."""

from __future__ import annotations

import importlib
from typing import Any

from ..config import settings
from ..domain import BrainConfig, Family
from ..errors import ConfigError
from ..policy import ApprovalPolicy, check_policy
from ._base import Brain, UsageCallback
from ._scripted import ScriptedBrain

__all__ = ["make_brain"]

# module, class: imported on first use (the model SDKs take ~0.6 s each to import, which
# every new agent process would otherwise pay even when it only runs scripts)
_BRAINS: dict[Family, tuple[str, str]] = {
    "chat-tools": ("._openai", "OpenAIBrain"),
    "openai-responses": ("._openai", "OpenAIBrain"),
    "anthropic": ("._anthropic", "AnthropicBrain"),
    "uitars": ("._open", "OpenModelBrain"),
    "qwen-vl": ("._open", "OpenModelBrain"),
    "opencua": ("._open", "OpenModelBrain"),
}


def make_brain(
    config: BrainConfig,
    *,
    on_usage: UsageCallback | None = None,
    policy: ApprovalPolicy | None = None,
) -> Brain:
    """A new brain for one task; raises ``ConfigError`` when the config cannot work (or the
    agent's ``policy`` asks for what the operator does not allow).

    A brain of a model family is made by its family's class with ``(config, on_usage=...)``;
    with a ``planner``, triage and planning go to the planner's model
    (``_planner.with_planner``). The agent's approval ``policy`` is the runner's to apply,
    except its ``safety_checks``, which only the family that receives safety checks
    (``openai-responses``) is given: ``safety_checks=...``.

    Example:
        >>> from orchestrator.domain import BrainConfig
        >>> type(make_brain(BrainConfig(kind="scripted", script={"steps": []}))).__name__
        'ScriptedBrain'
    """
    family = config.resolved_family
    if family is None:
        if config.script is None:
            raise ConfigError("a scripted brain needs a script (BrainConfig.script or the task's)")
        return ScriptedBrain(config.script, on_usage=on_usage)
    module, name = _BRAINS[family]
    cls: Any = getattr(importlib.import_module(module, __package__), name)
    extra: dict[str, Any] = {}
    if policy is not None and family == "openai-responses":
        check_policy(policy, allow_acknowledge=settings().allow_acknowledge_safety_checks)
        extra["safety_checks"] = policy.safety_checks
    brain: Brain = cls(config, on_usage=on_usage, **extra)
    if config.planner is not None:
        with_planner: Any = importlib.import_module("._planner", __package__).with_planner
        planned: Brain = with_planner(brain, config.planner, on_usage=on_usage)
        return planned
    return brain
