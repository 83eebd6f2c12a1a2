"""The Ray actors of the runtime: agents that each own a desktop, and the recorder.

``Runtime`` is the entry point from outside the tree (CLI, HTTP app, notebooks).
"""

from ._agent import AgentActor
from ._agent_ref import RayAgentRef, ours
from ._names import NAMESPACE
from ._recorder import Recorder
from ._recorder_ref import RecorderRef
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
]
