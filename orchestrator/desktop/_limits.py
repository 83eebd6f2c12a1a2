"""The most a desktop may ask of its node: the operator's maxima and image allow-list.

A spec over a maximum is refused with a ``ConfigError`` naming the field and the maximum
(the API answers 422) before anything starts. The node that starts a desktop checks it
against its own cores and memory; the API checks too, against the node it runs on, so that
a request no node of a uniform cluster could serve is refused before an agent is made.

Example:
    >>> limits = DesktopLimits(cpus=2, memory_mb=4096, shm_mb=None, pids=4096,
    ...                        images=("orchestrator-desktop:*",))
    >>> try:
    ...     limits.check(DesktopSpec(memory_mb=8192))
    ... except ConfigError as e:
    ...     print(str(e).split(" (")[0])
    desktop.memory_mb: 8192 is over the maximum of 4096 MiB
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..config import settings
from ..errors import ConfigError
from ..image import REPOSITORY
from ._spec import DesktopSpec

__all__ = ["DesktopLimits", "check_desktop"]

BUILT_IMAGES = f"{REPOSITORY}:*"
"""Every image this project builds (its tag is a digest of desktop_image/)."""


def node_cores() -> int:
    """CPU cores of this node."""
    return os.cpu_count() or 1


def node_memory_mb() -> int:
    """Physical memory of this node, in MiB."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def image_allowed(image: str, allowed: tuple[str, ...]) -> bool:
    """Whether ``image`` is one of ``allowed`` (an entry ending in ``*`` is a prefix)."""
    for entry in allowed:
        if entry.endswith("*") and image.startswith(entry[:-1]):
            return True
        if image == entry:
            return True
    return False


@dataclass(frozen=True)
class DesktopLimits:
    """The maxima one desktop's spec must stay within (on one node)."""

    cpus: float
    """Most CPU cores."""
    memory_mb: int
    """Most memory, in MiB."""
    shm_mb: int | None
    """Most ``/dev/shm`` in MiB (None: only the desktop's own memory bounds it)."""
    pids: int
    """Most processes and threads."""
    images: tuple[str, ...]
    """The images a spec may name (an entry ending in ``*`` is a prefix)."""

    @classmethod
    def of_this_node(cls) -> DesktopLimits:
        """The operator's settings, the unset ones filled in from this node's size."""
        cfg = settings()
        if cfg.desktop_images is None:
            images = tuple(i for i in (BUILT_IMAGES, cfg.desktop_image) if i)
        else:
            images = tuple(i.strip() for i in cfg.desktop_images.split(",") if i.strip())
        return cls(
            cpus=cfg.desktop_max_cpus or node_cores(),
            memory_mb=cfg.desktop_max_memory_mb or node_memory_mb(),
            shm_mb=cfg.desktop_max_shm_mb,
            pids=cfg.desktop_max_pids,
            images=images,
        )

    def check(self, spec: DesktopSpec) -> None:
        """``ConfigError`` naming the first field of ``spec`` over its maximum, if any (a
        spec naming no image runs the operator's default, which needs no allowing)."""
        image = spec.image
        over: list[tuple[str, float, float, str]] = [
            (
                "cpus",
                spec.cpus,
                self.cpus,
                "cores (ORCHESTRATOR_DESKTOP_MAX_CPUS; default: the node's cores)",
            ),
            (
                "memory_mb",
                spec.memory_mb,
                self.memory_mb,
                "MiB (ORCHESTRATOR_DESKTOP_MAX_MEMORY_MB; default: the node's memory)",
            ),
            ("pids_limit", spec.pids_limit, self.pids, "(ORCHESTRATOR_DESKTOP_MAX_PIDS)"),
            ("shm_mb", spec.shm_mb, spec.memory_mb, "MiB (the desktop's memory_mb)"),
        ]
        if self.shm_mb is not None:
            over.append(
                ("shm_mb", spec.shm_mb, self.shm_mb, "MiB (ORCHESTRATOR_DESKTOP_MAX_SHM_MB)")
            )
        for field, value, limit, unit in over:
            if value > limit:
                raise ConfigError(
                    f"desktop.{field}: {_num(value)} is over the maximum of {_num(limit)} {unit}"
                )
        if image is not None and not image_allowed(image, self.images):
            raise ConfigError(
                f"desktop.image: {image!r} is not an image this cluster allows "
                f"(allowed: {', '.join(self.images) or 'none'}; ORCHESTRATOR_DESKTOP_IMAGES)"
            )


def check_desktop(spec: DesktopSpec) -> None:
    """``ConfigError`` naming the field and its maximum when ``spec`` asks for more than this
    node allows one desktop."""
    DesktopLimits.of_this_node().check(spec)
