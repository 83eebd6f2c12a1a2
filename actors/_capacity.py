"""Desktops per node, read from Ray: the one place that reads Ray's per-node resources.

Each node declares units of the ``desktop`` resource; an agent's actor holds one. A node's
``desktops_used`` is its total less what Ray says is available; ``desktops_starting`` counts
the agents recorded ``starting`` whose actor Ray has placed on that node (their desktop is
starting). Those not placed yet (waiting for a node with a free unit: what an autoscaler
adds nodes for) are counted apart (``starting_unplaced``).

What a tenant sees names no node: its Ray node id and its address stay inside the cluster
(``node_id`` is an opaque label, a digest of the Ray id; ``address`` is ``node <n>``, its
place in the list), and ``starting`` counts are of the caller's agents only (the runtime
passes the tenant's). Ray's answers are kept for ``RAY_READ_TTL_S`` per replica, so a
tenant polling the route costs the control plane at most one read a second.

Example:
    >>> read_capacity([]).nodes[0].desktops_free     # doctest: +SKIP
    6
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from typing import Any

import ray

from orchestrator.domain import AgentInfo
from orchestrator.front import Capacity, NodeCapacity

__all__ = ["DESKTOP_RESOURCE", "RAY_READ_TTL_S", "free_desktops", "node_label", "read_capacity"]

log = logging.getLogger(__name__)

DESKTOP_RESOURCE = "desktop"
"""The Ray resource one agent's desktop takes a unit of."""
RAY_READ_TTL_S = 1.0
"""How long one replica reuses Ray's answers (nodes, resources, an actor's node)."""

_lock = threading.Lock()
_nodes_read: tuple[float, list[dict[str, Any]], dict[str, dict[str, float]]] | None = None
_placed: dict[str, tuple[float, str | None]] = {}


def node_label(node_id: str) -> str:
    """The opaque name a tenant sees for a node (a digest of its Ray id: stable, and no
    handle on the cluster's internals).

    Example:
        >>> node_label("abc")[:5], len(node_label("abc"))
        ('node-', 17)
    """
    return "node-" + hashlib.sha256(node_id.encode("utf-8")).hexdigest()[:12]


def free_desktops(node_id: str) -> float:
    """The ``desktop`` units free on node ``node_id`` now, as Ray says (read fresh, not from
    the capacity cache: a hire decides by it). Blocking (a control-plane call)."""
    from ray._private import state

    available: dict[str, dict[str, float]] = state.available_resources_per_node()  # type: ignore[no-untyped-call]
    return float(available.get(node_id, {}).get(DESKTOP_RESOURCE, 0))


def _cluster() -> tuple[list[dict[str, Any]], dict[str, dict[str, float]]]:
    """Ray's nodes and their available resources, read at most once per ``RAY_READ_TTL_S``."""
    global _nodes_read
    from ray._private import state

    with _lock:
        now = time.monotonic()
        if _nodes_read is None or now - _nodes_read[0] >= RAY_READ_TTL_S:
            available: dict[str, dict[str, float]] = state.available_resources_per_node()  # type: ignore[no-untyped-call]
            nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
            _nodes_read = (now, nodes, available)
        return _nodes_read[1], _nodes_read[2]


def _placed_on(actor_id: str) -> str | None:
    """``_node_of``, kept for ``RAY_READ_TTL_S``."""
    now = time.monotonic()
    with _lock:
        for stale in [a for a, (at, _) in _placed.items() if now - at >= RAY_READ_TTL_S]:
            del _placed[stale]
        hit = _placed.get(actor_id)
    if hit is not None:
        return hit[1]
    node = _node_of(actor_id)
    with _lock:
        _placed[actor_id] = (now, node)
    return node


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
    """Every node of the cluster with its desktops (named by ``node_label``, no address),
    and how many of the ``starting`` agents given wait unplaced. Blocking (control-plane
    calls, cached ``RAY_READ_TTL_S``): run it in a worker thread."""
    raw_nodes, available = _cluster()
    on_node: dict[str, int] = {}
    unplaced = 0
    for agent in starting:
        node = _placed_on(agent.actor_id) if agent.actor_id else None
        if node is None:
            unplaced += 1
        else:
            on_node[node] = on_node.get(node, 0) + 1
    ordered = sorted(
        raw_nodes,
        key=lambda n: (
            not n.get("Alive"),
            str(n.get("NodeManagerAddress", "")),
            str(n.get("NodeID", "")),
        ),
    )
    nodes: list[NodeCapacity] = []
    for index, raw in enumerate(ordered, start=1):
        node_id = str(raw.get("NodeID", ""))
        alive = bool(raw.get("Alive"))
        total = int(raw.get("Resources", {}).get(DESKTOP_RESOURCE, 0)) if alive else 0
        free = int(available.get(node_id, {}).get(DESKTOP_RESOURCE, 0)) if alive else 0
        free = max(0, min(free, total))
        nodes.append(
            NodeCapacity(
                node_id=node_label(node_id),
                address=f"node {index}",
                desktops_total=total,
                desktops_used=total - free,
                desktops_free=free,
                desktops_starting=on_node.get(node_id, 0),
                alive=alive,
            )
        )
    return Capacity(nodes=nodes, starting_unplaced=unplaced)
