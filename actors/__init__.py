"""The Ray actors of the runtime: agents that each own a desktop, and the recorder.

``Runtime`` is the entry point from outside the tree (CLI, HTTP app, notebooks).

Names are imported lazily: a Ray worker that loads one actor class (an agent's, to start
a hire) imports this package first, and should not pay for the others' modules.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._names import NAMESPACE

if TYPE_CHECKING:
    from ._agent import AgentActor
    from ._agent_ref import RayAgentRef, ours
    from ._recorder import Recorder
    from ._recorder_ref import RecorderRef
    from ._run import run_workflow
    from ._runtime import Runtime, init_ray

__all__ = [
    "NAMESPACE",
    "AgentActor",
    "RayAgentRef",
    "Recorder",
    "RecorderRef",
    "Runtime",
    "init_ray",
    "ours",
    "run_workflow",
]

_WHERE = {
    "AgentActor": "._agent",
    "RayAgentRef": "._agent_ref",
    "ours": "._agent_ref",
    "Recorder": "._recorder",
    "RecorderRef": "._recorder_ref",
    "Runtime": "._runtime",
    "init_ray": "._runtime",
    "run_workflow": "._run",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
