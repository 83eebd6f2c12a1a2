"""Text for a terminal: what the CLI prints, made harmless.

Roles, names, descriptions, results, errors and event data are a tenant's (or a model's)
text. Printed raw, an ESC or OSC sequence would drive the reader's terminal (move the
cursor, rewrite earlier lines, set the title, plant a hyperlink), a carriage return would
overwrite what a line starts with, and a bidi override would show text in another order
than it is. Every control character (C0 but newline and tab, DEL, C1) and every bidi
embedding, override and isolate is shown escaped instead, as ``\\x1b`` or ``\\u202e``.

Example:
    >>> print(safe("title\\x1b]0;pwned\\x07 \\u202eexe.png\\r"))
    title\\x1b]0;pwned\\x07 \\u202eexe.png\\x0d
"""

from __future__ import annotations

from typing import Any

import click

__all__ = ["echo", "safe"]

_KEEP = {"\n", "\t"}
_BIDI = [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]
"""Embeddings and overrides (LRE, RLE, PDF, LRO, RLO) and isolates (LRI, RLI, FSI, PDI)."""

_ESCAPES: dict[int, str] = {
    **{c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)] if chr(c) not in _KEEP},
    **{c: f"\\u{c:04x}" for c in _BIDI},
}


def safe(text: Any) -> str:
    """``text`` as a string with its control characters and bidi controls escaped."""
    return str(text).translate(_ESCAPES)


def echo(text: Any = "", *, err: bool = False) -> None:
    """``click.echo`` of :func:`safe` text: the CLI's one way to print."""
    click.echo(safe(text), err=err)
