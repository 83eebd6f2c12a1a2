"""Making the brain a ``BrainConfig`` asks for."""

from __future__ import annotations

import importlib
from typing import Any

from ..domain import BrainConfig, Family
from ..errors import ConfigError
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


def make_brain(config: BrainConfig, *, on_usage: UsageCallback | None = None) -> Brain:
    """A new brain for one task; raises ``ConfigError`` when the config cannot work.

    A brain of a model family is made by its family's class with ``(config, on_usage=...)``;
    with a ``planner``, triage and planning go to the planner's model
    (``_planner.with_planner``).

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
    brain: Brain = cls(config, on_usage=on_usage)
    if config.planner is not None:
        with_planner: Any = importlib.import_module("._planner", __package__).with_planner
        planned: Brain = with_planner(brain, config.planner, on_usage=on_usage)
        return planned
    return brain
