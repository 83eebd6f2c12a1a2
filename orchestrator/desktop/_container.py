"""One desktop container on the Docker engine: create it hardened, wait for ready, remove it.

The container contract (see desktop_image/): the host directory ``<sockdir>/x11`` is the
container's ``/tmp/.X11-unix`` and ``<sockdir>/run`` its ``/run/desktop``; desktop-init
writes ``run/ready`` (or ``run/failed``) once Xvfb, the window manager, VNC and SSH are up.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker.errors

from .._docker import client, docker_call, translate_errors
from ..config import settings
from ..errors import DesktopGoneError, DesktopNotReadyError, UntrustedPathError
from . import _hostfs
from ._network import container_network
from ._owner import owner_is_alive, register_owner_kind
from ._spec import DesktopSpec

__all__ = [
    "CAPABILITIES",
    "HANDOVER",
    "LABEL",
    "ContainerInfo",
    "SocketDir",
    "container_of",
    "create",
    "handover_owner",
    "remove",
    "wait_ready",
]

LABEL = "orchestrator.desktop"
"""Every desktop container carries this label; the runtime's own labels share its prefix."""

CAPABILITIES = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID", "KILL", "SYS_CHROOT"]
"""The only capabilities a desktop keeps (sshd and the switch to the agent user need them)."""


@dataclass(frozen=True)
class SocketDir:
    """The host directory shared with one desktop: its X socket and its run directory."""

    root: Path

    @property
    def x11(self) -> Path:
        return self.root / "x11"

    @property
    def x_socket(self) -> Path:
        return self.x11 / "X0"

    @property
    def run(self) -> Path:
        return self.root / "run"

    def make(self) -> None:
        self.root.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.root.mkdir(mode=0o700)
        self.x11.mkdir()
        self.x11.chmod(0o1777)  # Xvfb runs as the agent user and creates X0 here
        self.run.mkdir(mode=0o755)

    @property
    def owner_file(self) -> Path:
        """Who holds a handed-over desktop (see ``HANDOVER``); host-only, as the root is."""
        return self.root / "owner"

    def write_owner(self, owner: str) -> None:
        """Name ``owner`` (an owner string) as the holder: a new file renamed over the old
        one, so that a reaper never reads a half-written or missing holder."""
        tmp = self.root / f"owner.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, 0o600)
        try:
            os.write(fd, owner.encode())
        finally:
            os.close(fd)
        os.replace(tmp, self.owner_file)

    def read_owner(self) -> str | None:
        """The holder ``write_owner`` named (read through the checked opener, at most 4 KiB);
        None when there is none or the file is not a plain one."""
        try:
            raw = _hostfs.read_file(self.owner_file, max_bytes=4096)
        except (UntrustedPathError, OSError):
            return None
        return None if raw is None else raw.decode("utf-8", "replace").strip()

    def clear_markers(self) -> None:
        for name in ("ready", "failed"):
            (self.run / name).unlink(missing_ok=True)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


HANDOVER = "handover"
"""Owner kind of a desktop one process started for another (``handover:<desktop id>``,
see ``_handover``): its holder is whichever process ``<sockdir>/owner`` names."""


def handover_owner(desktop_id: str) -> str:
    """The owner label of a handed-over desktop."""
    return f"{HANDOVER}:{desktop_id}"


def _holder_alive(desktop_id: str) -> bool:
    """Whether the process named in the desktop's owner file lives (no file: gone)."""
    if not re.fullmatch(r"[0-9a-f]{1,32}", desktop_id):
        return False
    holder = SocketDir(settings().runtime_dir / "desktops" / desktop_id).read_owner() or ""
    return holder.startswith("process:") and owner_is_alive(holder)


register_owner_kind(HANDOVER, _holder_alive)


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str


def create(
    spec: DesktopSpec, image: str, name: str, sockdir: SocketDir, labels: dict[str, str]
) -> ContainerInfo:
    """Create and start a hardened desktop container (blocking)."""
    kwargs: dict[str, Any] = dict(
        image=image,
        name=name,
        hostname="desktop",
        detach=True,
        labels={**spec.labels, **labels, LABEL: "1"},
        environment={
            "DESKTOP_WIDTH": str(spec.width),
            "DESKTOP_HEIGHT": str(spec.height),
            "DESKTOP_DEPTH": str(spec.depth),
        },
        volumes={
            str(sockdir.x11): {"bind": "/tmp/.X11-unix", "mode": "rw"},
            str(sockdir.run): {"bind": "/run/desktop", "mode": "rw"},
        },
        **container_network(spec.network),  # egress: its own firewalled bridge (_network)
        cap_drop=["ALL"],
        cap_add=CAPABILITIES,
        security_opt=["no-new-privileges:true"],
        pids_limit=spec.pids_limit,
        mem_limit=f"{spec.memory_mb}m",
        memswap_limit=f"{spec.memory_mb}m",
        nano_cpus=int(spec.cpus * 1e9),
        shm_size=f"{spec.shm_mb}m",
    )
    # Look the image up first: `run` would try to pull a missing one from a registry.
    with translate_errors("looking up the desktop image", image=image):
        client().images.get(image)
    c = docker_call("starting a desktop container", client().containers.run, **kwargs)
    return ContainerInfo(id=c.id, name=c.name)


def state(container_id: str) -> str | None:
    """The container's state (``running``, ``exited`` ...) or None when it no longer exists."""
    with translate_errors("inspecting a desktop container"):
        try:
            return str(client().containers.get(container_id).status)
        except docker.errors.NotFound:
            return None


def logs_tail(container_id: str, lines: int = 30) -> str:
    """The last lines the container printed, for error messages ('' if unavailable)."""
    try:
        raw = client().containers.get(container_id).logs(tail=lines)
    except Exception:  # noqa: BLE001 - best effort, only for messages
        return ""
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def remove(container_id: str) -> None:
    """Kill and remove the container; a container already gone is fine."""
    with translate_errors("removing a desktop container"):
        try:
            client().containers.get(container_id).remove(force=True, v=True)
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as e:
            if e.status_code == 409 and "in progress" in str(e):
                return  # someone else is removing it already
            raise


def restart(container_id: str) -> None:
    """Restart the container in place (desktop-init runs again)."""
    with translate_errors("restarting a desktop container"):
        client().containers.get(container_id).restart(timeout=3)


READY_MAX_BYTES = 64 * 1024
"""The most the host reads of ``run/ready`` or ``run/failed`` (both are short JSON)."""

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def failure_reason(raw: bytes) -> str:
    """desktop-init's ``failed`` file as text for an error message: the container wrote it,
    so control characters (terminal escapes, bidi overrides) are dropped and it is capped."""
    text = raw.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("reason"), str):
        text = data["reason"]
    return _CONTROL.sub("", text)[:2000]


async def wait_ready(sockdir: SocketDir, container_id: str, timeout_s: float) -> dict[str, Any]:
    """Wait until desktop-init reports ready; raise with its reason or logs otherwise.

    ``ready`` and ``failed`` are read through ``_hostfs`` (a link or FIFO planted in their
    place raises ``UntrustedPathError``, never a read of what it names)."""
    deadline = time.monotonic() + timeout_s
    ready, failed = sockdir.run / "ready", sockdir.run / "failed"
    next_state_check = time.monotonic() + 0.25
    while True:
        raw = _hostfs.read_file(ready, max_bytes=READY_MAX_BYTES)
        if raw is not None:
            try:
                info = json.loads(raw)
            except ValueError:
                info = None  # written atomically, so only a rename race: look again
            if isinstance(info, dict):
                return info
        raw = _hostfs.read_file(failed, max_bytes=READY_MAX_BYTES)
        if raw is not None:
            raise DesktopNotReadyError(
                f"desktop {container_id[:12]} failed to start: {failure_reason(raw)}\n"
                f"{await asyncio.to_thread(logs_tail, container_id)}"
            )
        now = time.monotonic()
        if now >= next_state_check:
            next_state_check = now + 0.25
            st = await asyncio.to_thread(state, container_id)
            if st != "running" and st != "created" and st != "restarting":
                logs = await asyncio.to_thread(logs_tail, container_id)
                if st is None:
                    raise DesktopGoneError(f"desktop {container_id[:12]} vanished while starting")
                raise DesktopNotReadyError(
                    f"desktop {container_id[:12]} is {st} before it was ready:\n{logs}"
                )
        if now >= deadline:
            logs = await asyncio.to_thread(logs_tail, container_id)
            raise DesktopNotReadyError(
                f"desktop {container_id[:12]} not ready after {timeout_s:.0f} s:\n{logs}"
            )
        await asyncio.sleep(0.005)


def container_of(sockdir_root: Path) -> str:
    """The id of the desktop container created with ``sockdir_root`` (its
    ``orchestrator.sockdir`` label, which only the runtime sets); ``UntrustedPathError``
    when there is not exactly one."""
    with translate_errors("looking up a desktop container"):
        found = client().containers.list(
            all=True, filters={"label": f"orchestrator.sockdir={sockdir_root}"}
        )
    ids = [c.id for c in found if c.labels.get(LABEL) == "1"]
    if len(ids) != 1:
        raise UntrustedPathError(
            f"no single desktop container owns {sockdir_root.name}: refusing its sockets"
        )
    return str(ids[0])
