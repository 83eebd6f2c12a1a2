"""Starting an agent actor: its Ray options (one unit of the ``desktop`` resource), the start
call once Ray placed it, and the record of one that failed to start. Re-exported by ``_agent``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from orchestrator.domain import AgentInfo, AgentStatus

from ._hire import wait_placed
from ._names import NAMESPACE

__all__ = ["agent_options", "failed_agent", "start_agent"]


def failed_agent(info: AgentInfo, error: Exception) -> AgentInfo:
    """The record of an agent that failed to start, with the reason."""
    return info.model_copy(
        update={"status": AgentStatus.FAILED, "error": f"failed to start: {error}"[:2000]}
    )


def agent_options(path: str, *, detached: bool) -> dict[str, Any]:
    """Ray options of an agent actor named ``path``: one unit of the ``desktop`` resource."""
    opts: dict[str, Any] = dict(
        name=path,
        namespace=NAMESPACE,
        num_cpus=0,
        resources={"desktop": 1},
        max_restarts=0,
        max_concurrency=1000,
    )
    if detached:
        opts["lifetime"] = "detached"
    return opts


async def start_agent(
    handle: Any, path: str, on_waiting: Callable[[str], Awaitable[None]] | None = None
) -> AgentInfo:
    """Start a new agent actor's desktop; returns its info once ready.

    ``CapacityError`` when Ray found no node with a free ``desktop`` unit for it in time
    (``wait_placed``; ``on_waiting`` is told when it waits for a node). The caller kills the
    actor when this raises.
    """
    await wait_placed(handle, path, on_waiting)
    started: AgentInfo = await handle.start.remote()
    return started
