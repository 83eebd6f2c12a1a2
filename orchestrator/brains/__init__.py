"""Brains: what decides, for an agent, how to handle a task and what to do on its desktop.

- ``Brain``: the interface (triage, plan, step, check); ``BrainContext``, ``Observation``
  and ``StepRecord`` are what it decides on (see ``_base`` for the protocol with the runner).
- ``OpenAIBrain``: a model behind an OpenAI-compatible API, acting through function tools
  (mode ``chat``) or the Responses API's computer tool (mode ``responses``).
- ``ScriptedBrain``: an explicit plan from a script, no model (format: ``Script``).
- ``make_brain``: the brain a ``BrainConfig`` names.

Example:
    >>> from orchestrator.domain import BrainConfig
    >>> brain = make_brain(BrainConfig(kind="scripted", script={"steps": [{"type": "wait"}]}))
    >>> brain.script.decision
    'do'
"""

from __future__ import annotations

from ._base import Brain, BrainContext, Observation, StepRecord, UsageCallback
from ._factory import make_brain
from ._openai import OpenAIBrain
from ._responses import SAFETY_CHECK_PREFIX
from ._script import Script
from ._scripted import ScriptedBrain

__all__ = [
    "SAFETY_CHECK_PREFIX",
    "Brain",
    "BrainContext",
    "Observation",
    "OpenAIBrain",
    "Script",
    "ScriptedBrain",
    "StepRecord",
    "UsageCallback",
    "make_brain",
]
