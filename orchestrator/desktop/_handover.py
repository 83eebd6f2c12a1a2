"""A desktop started by one process and handed to another on the same host.

A cold hire has two slow starts: the child's Ray worker process and its desktop container.
The parent starts the container (``prepare_desktop``: created, and ready as desktop-init
says) while Ray starts the child's process, then the child connects to it and owns it
(``adopt_desktop``). The container's owner label is ``handover:<desktop id>``: its holder
is the process named in ``<sockdir>/owner`` (host-only), first the one that prepared it,
then the one that adopted it, so the reaper removes it once its holder is gone, whichever
that is. A desktop nobody adopts is removed by the one that prepared it
(``discard_desktop``).

Example:
    >>> prepared = await prepare_desktop(DesktopSpec())  # doctest: +SKIP
    >>> desk = await adopt_desktop(prepared)  # in the other process  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import settings
from ..image import default_image
from . import _container
from ._admission import start_slot
from ._desktop import Desktop
from ._limits import check_desktop
from ._owner import _boot_id, process_owner
from ._reaper import reap_in_background
from ._spec import DesktopSpec

__all__ = ["PreparedDesktop", "adopt_desktop", "discard_desktop", "prepare_desktop"]


@dataclass(frozen=True)
class PreparedDesktop:
    """A desktop container that is up and ready but not connected to: what the process that
    prepared it hands to the one that will own it (through Ray: it holds the SSH client
    key, so it stays inside the cluster)."""

    desktop_id: str
    spec: DesktopSpec
    image: str
    sockdir: Path
    """The host directory shared with the container (its X socket, its run directory)."""
    container_id: str
    host: str
    """The boot id of the host it runs on: only a process there can adopt it."""
    client_key: bytes = field(repr=False)
    """The SSH client key the container accepts (OpenSSH private key format)."""
    vnc_password: str = field(repr=False)
    ready_info: dict[str, Any] = field(default_factory=dict)
    """What desktop-init reported when it was ready."""
    preparer: str = ""
    """The owner string of the process that prepared it."""

    @property
    def here(self) -> bool:
        """Whether this process runs on the desktop's host (and so can adopt it)."""
        return self.host == _boot_id()

    @property
    def adopted(self) -> bool:
        """Whether a process other than the one that prepared it holds it now."""
        holder = _container.SocketDir(self.sockdir).read_owner()
        return holder is not None and holder != self.preparer


def _desktop(p: PreparedDesktop) -> Desktop:
    """A ``Desktop`` object for the prepared container (not connected)."""
    desk = Desktop(
        desktop_id=p.desktop_id,
        spec=p.spec,
        image=p.image,
        owner=_container.handover_owner(p.desktop_id),
        sockdir=_container.SocketDir(p.sockdir),
    )
    desk.container_id = p.container_id
    return desk


async def prepare_desktop(
    spec: DesktopSpec | None = None,
    *,
    labels: dict[str, str] | None = None,
    ready_timeout_s: float | None = None,
    on_queued: Callable[[], Awaitable[None]] | None = None,
) -> PreparedDesktop:
    """Start a desktop for another process on this host and wait until desktop-init says it
    is ready (the node's start slot held meanwhile, as ``Desktop.start`` does); this process
    holds it until that one adopts it. Nothing is left behind when this raises."""
    spec = spec or DesktopSpec()
    check_desktop(spec)
    cfg = settings()
    reap_in_background()
    desktop_id = secrets.token_hex(5)
    desk = Desktop(
        desktop_id=desktop_id,
        spec=spec,
        image=spec.image or default_image(),
        owner=_container.handover_owner(desktop_id),
        sockdir=_container.SocketDir(cfg.runtime_dir / "desktops" / desktop_id),
    )
    me = process_owner()
    timeout_s = ready_timeout_s or cfg.desktop_ready_timeout_s
    try:
        async with start_slot(on_queued):
            await desk._create(labels or {}, holder=me)
            assert desk.container_id is not None
            ready = await _container.wait_ready(desk.sockdir, desk.container_id, timeout_s)
    except BaseException:
        await desk.stop()
        raise
    return PreparedDesktop(
        desktop_id=desktop_id,
        spec=spec,
        image=desk.image,
        sockdir=desk.sockdir.root,
        container_id=desk.container_id,
        host=_boot_id(),
        client_key=desk._client_key.export_private_key(),
        vnc_password=desk._vnc_password,
        ready_info=ready,
        preparer=me,
    )


async def adopt_desktop(prepared: PreparedDesktop, *, timeout_s: float | None = None) -> Desktop:
    """Take over a desktop another process prepared on this host: this process holds it
    from now on, then connects to its display (its SSH session connects in the background,
    see ``_shell_link``). Should the connection fail, the desktop is removed and the error
    raised."""
    if not prepared.here:
        raise ValueError(f"desktop {prepared.desktop_id} runs on another host")
    desk = _desktop(prepared)
    desk._key_data = prepared.client_key  # read with the SSH connection, in the background
    desk._vnc_password = prepared.vnc_password
    try:
        desk.sockdir.write_owner(process_owner())
        await desk._connect(timeout_s or settings().desktop_ready_timeout_s)
    except BaseException:
        await desk.stop()
        raise
    return desk


async def discard_desktop(prepared: PreparedDesktop) -> None:
    """Remove a prepared desktop nobody adopted (its container and its host directory)."""
    await asyncio.shield(_desktop(prepared).stop())
