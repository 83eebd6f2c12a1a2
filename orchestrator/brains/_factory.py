"""Making the brain a ``BrainConfig`` asks for."""

from __future__ import annotations

from ..domain import BrainConfig
from ..errors import ConfigError
from ._base import Brain, UsageCallback
from ._scripted import ScriptedBrain

__all__ = ["make_brain"]


def make_brain(config: BrainConfig, *, on_usage: UsageCallback | None = None) -> Brain:
    """A new brain for one task; raises ``ConfigError`` when the config cannot work.

    Example:
        >>> from orchestrator.domain import BrainConfig
        >>> type(make_brain(BrainConfig(kind="scripted", script={"steps": []}))).__name__
        'ScriptedBrain'
    """
    if config.kind == "scripted":
        if config.script is None:
            raise ConfigError("a scripted brain needs a script (BrainConfig.script or the task's)")
        return ScriptedBrain(config.script, on_usage=on_usage)
    # Imported here: the openai package takes ~0.6 s to import, which every new agent
    # process would otherwise pay even when it only runs scripts.
    from ._openai import OpenAIBrain

    return OpenAIBrain(config, on_usage=on_usage)
