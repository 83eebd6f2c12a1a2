"""Brains: what decides, for an agent, how to handle a task and what to do on its desktop.

- ``Brain``: the interface (triage, plan, step, check); ``BrainContext``, ``Observation``
  and ``StepRecord`` are what it decides on (see ``_base`` for the protocol with the runner).
- ``OpenAIBrain``: a model behind an OpenAI-compatible API, acting through function tools
  (mode ``chat``) or the Responses API's computer tool (mode ``responses``).
- ``ScriptedBrain``: an explicit plan from a script, no model (format: ``Script``).
- ``make_brain``: the brain a ``BrainConfig`` names.
- ``parse_reply``: a model's reply, as its server sent it, to a decision in screen pixels
  (pure; replay tests and outside checks use it).

Example:
    >>> from orchestrator.domain import BrainConfig
    >>> brain = make_brain(BrainConfig(kind="scripted", script={"steps": [{"type": "wait"}]}))
    >>> brain.script.decision
    'do'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._base import Brain, BrainContext, Observation, StepRecord, UsageCallback
from ._factory import make_brain
from ._parse import parse_reply
from ._script import Script
from ._scripted import ScriptedBrain

if TYPE_CHECKING:
    from ._openai import OpenAIBrain
    from ._responses import SAFETY_CHECK_PREFIX

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
    "parse_reply",
]


def __getattr__(name: str) -> Any:
    # The OpenAI side imports the openai package (~0.6 s): load it only when asked for.
    if name == "OpenAIBrain":
        return importlib.import_module("._openai", __name__).OpenAIBrain
    if name == "SAFETY_CHECK_PREFIX":
        return importlib.import_module("._responses", __name__).SAFETY_CHECK_PREFIX
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
