"""What a desktop is made of: the user-facing configuration of one desktop container."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DesktopSpec"]

_LabelKey = Annotated[str, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9._/-]{0,127}$")]


class DesktopSpec(BaseModel):
    """Size, limits and network of a desktop container. The bounds here are static; the
    node that starts a desktop also holds it to the operator's maxima (``DesktopLimits``).

    Example:
        >>> DesktopSpec(width=1024, height=768, network="egress").memory_mb
        2048
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: str | None = None
    """Docker image; default: the image built from this checkout's desktop_image/. Only the
    images the operator allows (``ORCHESTRATOR_DESKTOP_IMAGES``) run."""
    width: Annotated[int, Field(ge=320, le=7680)] = 1280
    """Screen width in pixels."""
    height: Annotated[int, Field(ge=200, le=4320)] = 800
    """Screen height in pixels."""
    depth: Literal[16, 24] = 24
    """Colour depth in bits."""
    cpus: Annotated[float, Field(gt=0, le=256)] = 1.0
    """CPU limit, in cores (at most the node's cores, or the operator's maximum)."""
    memory_mb: Annotated[int, Field(ge=256, le=1_048_576)] = 2048
    """Memory limit of the whole container, in MiB (at most the node's memory, or the
    operator's maximum)."""
    pids_limit: Annotated[int, Field(ge=64, le=1_000_000)] = 1024
    """Most processes and threads the desktop may run at once (at most 4096, or the
    operator's maximum)."""
    shm_mb: Annotated[int, Field(ge=16, le=65_536)] = 256
    """Size of /dev/shm in MiB (browsers need a few hundred; at most ``memory_mb``)."""
    network: Literal["none", "egress"] = "none"
    """``none``: no network at all; ``egress``: outbound access to public addresses only, on
    a firewalled bridge of the desktops' own (no other desktop, private or link-local range,
    or port of the host; see ``orchestrator.desktop._network``)."""
    labels: dict[_LabelKey, Annotated[str, Field(max_length=1024)]] = Field(default_factory=dict)
    """Extra container labels (the runtime adds its own under ``orchestrator.``)."""
