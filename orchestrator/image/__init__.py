"""The desktop image: its tag (a hash of desktop_image/) and its builder.

Works with or without a container registry: the base is ``debian:bookworm-slim`` when it
is on the machine or can be pulled, else a bookworm root file system debootstrapped from
the Debian mirror the machine's apt already uses, imported as ``orchestrator-base:bookworm``.

    >>> tag = build_image(progress=print)   # doctest: +SKIP
    >>> tag == image_tag()                  # doctest: +SKIP
    True
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from ..config import settings
from ..errors import ImageBuildError
from ._tag import REPOSITORY, source_digest, tag_for

__all__ = ["REPOSITORY", "build_image", "default_image", "image_tag"]

_log = logging.getLogger(__name__)


def _log_progress(line: str) -> None:
    _log.info("%s", line)


def image_tag(directory: Path | None = None) -> str:
    """``orchestrator-desktop:<12 hex>``: the sha256 of the image sources' paths and contents
    (``settings().desktop_image_dir`` unless ``directory`` is given)."""
    return tag_for(directory or settings().desktop_image_dir)


def default_image() -> str:
    """The desktop image to run: ``ORCHESTRATOR_DESKTOP_IMAGE``, else :func:`image_tag`."""
    return settings().desktop_image or image_tag()


def build_image(
    *,
    base_image: str | None = None,
    progress: Callable[[str], None] = _log_progress,
    force: bool = False,
    mirror: str | None = None,
) -> str:
    """Build the desktop image from ``settings().desktop_image_dir``; return its tag.

    Returns at once when the tag is already on this machine (unless ``force``, which
    rebuilds without the layer cache). The base is ``base_image`` (default
    ``debian:bookworm-slim``) if local, else pulled (given up quickly when no registry
    answers), else debootstrapped from ``mirror`` (default: the Debian mirror in the
    machine's apt sources). Raises ``ImageBuildError`` (with the failing step's output)
    or ``DockerUnavailableError``.
    """
    # The builder talks to Docker: imported here, so naming the image stays light.
    from ._apt import DebianMirrors
    from ._base import ensure_base, image_exists
    from ._build import run_build

    directory = settings().desktop_image_dir
    tag = tag_for(directory)
    if not force and image_exists(tag):
        progress(f"{tag}: already built")
        return tag
    t0 = time.monotonic()
    mirrors = DebianMirrors(main=mirror.rstrip("/"), updates=mirror.rstrip("/")) if mirror else None
    base = ensure_base(base_image, progress, mirrors=mirrors)
    progress(f"building {tag} on {base}")
    run_build(
        directory,
        tag,
        base=base,
        progress=progress,
        nocache=force,
        labels={"orchestrator.image.sources": source_digest(directory), "orchestrator.base": base},
    )
    if not image_exists(tag):
        raise ImageBuildError(f"the build of {tag} finished but the image is missing")
    progress(f"built {tag} in {time.monotonic() - t0:.0f} s")
    return tag
