"""``start_local()``: a local cluster (``orchestrator.local.up``) and a client on it, in one
call, for a notebook.

Exported as ``orchestrator.sdk.start_local``, but it belongs to the top layer, with the
command line and ``orchestrator.local`` (see ``[tool.importlinter]`` in ``pyproject.toml``):
the SDK itself needs none of the runtime, and this module reaches it only when called.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ._extras import require_runtime

if TYPE_CHECKING:
    from ._local_autoscale import Autoscale
    from .sdk import Client

__all__ = ["start_local"]


def start_local(
    *,
    api_port: int = 8000,
    dashboard_port: int = 8265,
    desktops: int | None = None,
    data_dir: Path | str | None = None,
    timeout_s: float = 180.0,
    autoscale: Autoscale | None = None,
) -> Client:
    """Start Ray and the HTTP API on 127.0.0.1 (or find them running) and return a
    ``Client`` on it, with the local cluster's key (tenant ``default``).

    Example:
        >>> from orchestrator.sdk import start_local              # doctest: +SKIP
        >>> api = start_local()                                    # doctest: +SKIP
        >>> agent = api.create_agent("alice", role="sysadmin")    # doctest: +SKIP

    ``autoscale`` (``orchestrator.local.Autoscale``): worker nodes come and go on this
    machine as agents wait for desktops (``orchestrator up --autoscale``).

    The cluster outlives the notebook; ``orchestrator down`` (or
    ``orchestrator.local.down()``) stops it. Without the runtime installed (``pip install
    orchestrator`` installs the SDK only) it raises ``ModuleNotFoundError`` naming the extra:
    ``pip install 'orchestrator[runtime]'``.
    """
    require_runtime("start_local()")
    from .local import up
    from .sdk import Client

    cluster = up(
        api_port=api_port,
        dashboard_port=dashboard_port,
        desktops=desktops,
        data_dir=data_dir,
        timeout_s=timeout_s,
        autoscale=autoscale,
    )
    return Client(cluster.api_url, cluster.api_key)
