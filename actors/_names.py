"""Names of the runtime's actors: one Ray namespace, agents named by their path in the tree.

A path reads ``tenant/user/.../specialist`` in the Ray dashboard and ``ray list actors``.
"""

from __future__ import annotations

import re

__all__ = ["NAMESPACE", "POOL_NAME", "RECORDER_NAME", "child_path", "slug"]

NAMESPACE = "orchestrator"
RECORDER_NAME = "_system/recorder"
POOL_NAME = "_system/pool"


def slug(text: str, max_len: int = 40) -> str:
    """A name-safe version of ``text`` (``"Package installer"`` -> ``"package-installer"``)."""
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return (s[:max_len].rstrip("-")) or "agent"


def child_path(parent_path: str, name: str) -> str:
    """The path of a child named ``name`` under ``parent_path``."""
    return f"{parent_path}/{name}"
