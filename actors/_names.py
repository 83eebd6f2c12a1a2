"""Names of the runtime's actors: one Ray namespace, agents named by their path in the tree.

A path reads ``tenant/user/.../specialist`` in the Ray dashboard and ``ray list actors``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.domain import AgentInfo

__all__ = [
    "NAMESPACE",
    "POOL_NAME",
    "RECORDER_NAME",
    "actor_alive",
    "actor_of",
    "alive_actor_ids",
    "child_path",
    "slug",
]

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


def actor_alive(info: AgentInfo) -> bool:
    """Whether the agent ``info`` records has a live actor.

    More than ``actor_of``: the name of a non-detached actor that died (its worker process
    killed, say) still resolves while the actor's owner lives, to a handle whose every call
    fails, so the actor's own state is read too (Ray's control store, one call)."""
    handle = actor_of(info)
    if handle is None:
        return False
    # No public API reads one actor's state without the dashboard, which local clusters
    # leave out; this is the call `ray.util.state` ends in.
    from ray._private import state

    found = state.actors(actor_id=handle._actor_id.hex())
    return bool(found) and found.get("State") != "DEAD"


def alive_actor_ids() -> set[str]:
    """Ids (hex) of every actor Ray has as alive right now (one call to its control store)."""
    from ray._private import state

    return set(state.actors(actor_state_name="ALIVE"))
