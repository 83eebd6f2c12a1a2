"""Desktops per node, read from Ray: the one place that reads Ray's per-node resources.

Each node declares units of the ``desktop`` resource; an agent's actor holds one. A node's
``desktops_used`` is its total less what Ray says is available; ``desktops_starting`` counts
the agents recorded ``starting`` whose actor Ray has placed on that node (their desktop is
starting). Those not placed yet (waiting for a node with a free unit: what an autoscaler
adds nodes for) are counted apart (``starting_unplaced``).

Example:
    >>> read_capacity([]).nodes[0].desktops_free     # doctest: +SKIP
    6
"""

from __future__ import annotations

import logging
from typing import Any

import ray

from orchestrator.domain import AgentInfo
from orchestrator.front import Capacity, NodeCapacity

__all__ = ["DESKTOP_RESOURCE", "read_capacity"]

log = logging.getLogger(__name__)

DESKTOP_RESOURCE = "desktop"
"""The Ray resource one agent's desktop takes a unit of."""


def _node_of(actor_id: str) -> str | None:
    """The node a placed actor runs on (None: not placed yet, dead, or unknown)."""
    from ray._private import state

    try:
        entry: Any = state.actors(actor_id)
    except Exception as e:  # noqa: BLE001 - one unreadable actor counts as unplaced
        log.info("actor %s: no node: %s", actor_id, e)
        return None
    if not isinstance(entry, dict) or entry.get("State") not in ("ALIVE", "RESTARTING"):
        return None
    node = (entry.get("Address") or {}).get("NodeID")
    return str(node) if node else None


def read_capacity(starting: list[AgentInfo]) -> Capacity:
    """Every node of the cluster with its desktops, and how many ``starting`` agents wait
    unplaced. Blocking (control-plane calls): run it in a worker thread."""
    from ray._private import state

    available: dict[str, dict[str, float]] = state.available_resources_per_node()  # type: ignore[no-untyped-call]
    on_node: dict[str, int] = {}
    unplaced = 0
    for agent in starting:
        node = _node_of(agent.actor_id) if agent.actor_id else None
        if node is None:
            unplaced += 1
        else:
            on_node[node] = on_node.get(node, 0) + 1
    nodes: list[NodeCapacity] = []
    for node in ray.nodes():  # type: ignore[no-untyped-call]
        node_id = str(node.get("NodeID", ""))
        alive = bool(node.get("Alive"))
        total = int(node.get("Resources", {}).get(DESKTOP_RESOURCE, 0)) if alive else 0
        free = int(available.get(node_id, {}).get(DESKTOP_RESOURCE, 0)) if alive else 0
        free = max(0, min(free, total))
        nodes.append(
            NodeCapacity(
                node_id=node_id,
                address=str(node.get("NodeManagerAddress", "")),
                desktops_total=total,
                desktops_used=total - free,
                desktops_free=free,
                desktops_starting=on_node.get(node_id, 0),
                alive=alive,
            )
        )
    nodes.sort(key=lambda n: (not n.alive, n.address, n.node_id))
    return Capacity(nodes=nodes, starting_unplaced=unplaced)
