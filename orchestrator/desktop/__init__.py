"""Desktops: a real Linux desktop per agent, in a hardened container, driven at X speed.

Names are imported lazily so that the spec can be used without the X11 and SSH layers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._desktop import Desktop, LiveView, Screenshot
    from ._handover import PreparedDesktop, adopt_desktop, discard_desktop, prepare_desktop
    from ._limits import DesktopLimits, check_desktop
    from ._owner import owner_is_alive, process_owner, register_owner_kind
    from ._reaper import reap
    from ._rfb import ViewerFilter, ViewerHandshake, upstream_handshake, vnc_auth_response
    from ._screen import Frame, Scaling
    from ._spec import DesktopSpec

__all__ = [
    "Desktop",
    "DesktopLimits",
    "DesktopSpec",
    "Frame",
    "LiveView",
    "PreparedDesktop",
    "Scaling",
    "Screenshot",
    "ViewerFilter",
    "ViewerHandshake",
    "adopt_desktop",
    "check_desktop",
    "discard_desktop",
    "owner_is_alive",
    "prepare_desktop",
    "process_owner",
    "reap",
    "register_owner_kind",
    "upstream_handshake",
    "vnc_auth_response",
]

_WHERE = {
    "Desktop": "._desktop",
    "LiveView": "._desktop",
    "Screenshot": "._desktop",
    "PreparedDesktop": "._handover",
    "adopt_desktop": "._handover",
    "discard_desktop": "._handover",
    "prepare_desktop": "._handover",
    "DesktopLimits": "._limits",
    "check_desktop": "._limits",
    "owner_is_alive": "._owner",
    "process_owner": "._owner",
    "register_owner_kind": "._owner",
    "reap": "._reaper",
    "Frame": "._screen",
    "Scaling": "._screen",
    "DesktopSpec": "._spec",
    "ViewerFilter": "._rfb",
    "ViewerHandshake": "._rfb",
    "upstream_handshake": "._rfb",
    "vnc_auth_response": "._rfb",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
