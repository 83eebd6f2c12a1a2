"""orchestrator: an actor-model runtime on Ray where every agent owns a real Linux desktop.

Names are imported lazily, so that ``import orchestrator.actions`` (in a Ray worker, say)
does not pull in the X11, SSH and Docker layers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import actions, errors
    from .desktop import Desktop, DesktopSpec, LiveView, Scaling, Screenshot

__all__ = [
    "Desktop",
    "DesktopSpec",
    "LiveView",
    "Scaling",
    "Screenshot",
    "actions",
    "errors",
]

_LAZY = {
    "Desktop": ".desktop",
    "DesktopSpec": ".desktop",
    "LiveView": ".desktop",
    "Scaling": ".desktop",
    "Screenshot": ".desktop",
}


def __getattr__(name: str) -> Any:
    if name in ("actions", "errors"):
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
