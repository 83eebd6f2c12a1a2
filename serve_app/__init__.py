"""The HTTP deployment (Ray Serve) that exposes the agent hierarchy.

``deploy()`` starts Serve on loopback and runs ``ApiDeployment``: a FastAPI app (OpenAPI at
``/docs``) whose replicas hold no state and call ``actors.Runtime`` on the running cluster.
API keys map to tenants (``ORCHESTRATOR_API_KEYS`` / ``ORCHESTRATOR_API_KEYS_FILE``, see
``serve_app._auth``); every error answers one JSON shape (see ``serve_app._errors``).

Example:
    >>> from serve_app import deploy                      # doctest: +SKIP
    >>> deploy(port=8000, keys_file="/etc/orchestrator/api-keys")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI

from ._auth import KeyStore
from ._errors import MAX_BODY_BYTES

if TYPE_CHECKING:
    from orchestrator.front import SessionRecords

__all__ = ["APP_NAME", "MAX_BODY_BYTES", "KeyStore", "build_app", "deploy"]

APP_NAME = "orchestrator"


def build_app(
    keys: KeyStore | None = None, session_records: SessionRecords | None = None
) -> FastAPI:
    """The FastAPI app on its own (for ASGI servers or tests); keys default to the env,
    console sessions to the cluster's records."""
    from ._app import build_app as _build

    return _build(keys, session_records)


def deploy(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    keys_file: str | None = None,
    blocking: bool = False,
) -> str:
    """Start Serve on ``host:port`` (Ray must be initialised) and run the API; returns its URL.

    ``keys_file`` is read by each replica (a path on the replicas' nodes); without it the
    replicas read ``ORCHESTRATOR_API_KEYS`` / ``ORCHESTRATOR_API_KEYS_FILE`` themselves.
    """
    from ray import serve

    from ._app import ApiDeployment

    # Proxies on the head only (where the replicas run): a worker node may be an autoscaled
    # one that goes away, and on one machine a second proxy would bind the same port.
    serve.start(proxy_location="HeadOnly", http_options={"host": host, "port": port})
    serve.run(
        ApiDeployment.bind(keys_file),  # type: ignore[attr-defined]
        name=APP_NAME,
        route_prefix="/",
        blocking=blocking,
    )
    return f"http://{host}:{port}"
