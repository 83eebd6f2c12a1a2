"""Names of the runtime's actors: one Ray namespace, agents named by their path in the tree.

A path reads ``tenant/user/.../specialist`` in the Ray dashboard and ``ray list actors``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.domain import AgentInfo

__all__ = ["NAMESPACE", "POOL_NAME", "RECORDER_NAME", "actor_of", "child_path", "slug"]

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


def actor_of(info: AgentInfo) -> Any | None:
    """The live actor of the agent ``info`` records, or None (gone; or its name now belongs
    to a later agent: a fired agent's id must never reach the new agent of the same path)."""
    import ray

    try:
        handle = ray.get_actor(info.actor or info.path, namespace=NAMESPACE)
    except ValueError:
        return None
    if info.actor_id is not None and handle._actor_id.hex() != info.actor_id:
        return None
    return handle
