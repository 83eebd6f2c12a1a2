"""Serve's replica gRPC server on the node's own address, not on every interface.

Ray 2.60 starts each replica's inter-deployment gRPC server (the one Serve's proxy calls with
``RAY_SERVE_PROXY_USE_GRPC=1``) on ``[::]:0``, whether the proxy uses it or not, and has no
setting to change that: on a node with desktops the port is also on the Docker bridges'
addresses. The proxy dials the replica at its node's address (``node_ip:port``), so the
server needs no other: ``bind_replica_grpc_to_node_address()``, called in the replica before
Serve starts that server, makes Serve bind it there (127.0.0.1 on a local cluster).
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

__all__ = ["ANY_ADDRESS", "bind_replica_grpc_to_node_address"]

log = logging.getLogger(__name__)

ANY_ADDRESS = "[::]:0"
"""What Ray 2.60's replica asks for (``ray.serve._private.replica._on_initialized``)."""


def _node_address(node_ip: str) -> str:
    return f"[{node_ip}]:0" if ipaddress.ip_address(node_ip).version == 6 else f"{node_ip}:0"


def bind_replica_grpc_to_node_address() -> None:
    """In a Serve replica: its gRPC server on ``<node ip>:0`` instead of ``[::]:0``.

    Idempotent; a Ray whose replica module no longer binds that way is left alone (logged).
    """
    import ray
    from ray.serve._private import replica

    original: Any = getattr(replica, "add_port_to_grpc_server", None)
    if original is None:
        log.warning("ray.serve replica has no add_port_to_grpc_server: gRPC bind left as is")
        return
    if getattr(original, "_binds_node_address", False):
        return
    node = _node_address(ray.util.get_node_ip_address())  # type: ignore[no-untyped-call]

    def add_port(server: Any, address: str) -> Any:
        return original(server, node if address == ANY_ADDRESS else address)

    add_port._binds_node_address = True  # type: ignore[attr-defined]
    setattr(replica, "add_port_to_grpc_server", add_port)  # noqa: B010 - not exported
