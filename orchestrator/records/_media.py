"""The media type of a file by its name: what a kept file is stored and served as."""

from __future__ import annotations

import mimetypes

__all__ = ["media_type"]


def media_type(path: str) -> str:
    """The media type ``path``'s name suggests, else ``application/octet-stream``.

    Example:
        >>> media_type("/home/agent/out/report.txt"), media_type("blob")
        ('text/plain', 'application/octet-stream')
    """
    guessed, _ = mimetypes.guess_type(path, strict=False)
    return guessed or "application/octet-stream"
