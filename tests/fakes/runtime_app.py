"""The API app on a ``LocalRuntime``: route tests through FastAPI's TestClient, no Ray.

Example:
    >>> import tempfile, pathlib
    >>> from orchestrator.records import SQLiteStore
    >>> with api(SQLiteStore(pathlib.Path(tempfile.mkdtemp()))) as (client, rt):
    ...     client.get("/v1/agents", headers=AUTH).json()
    []
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi.testclient import TestClient

from orchestrator.records import RecordStore

from .runtime import LocalRuntime

__all__ = ["AUTH", "OTHER", "TENANT", "api"]

TENANT = "t-a"
KEY = "route-key-a-123456"
OTHER_KEY = "route-key-b-123456"
AUTH = {"Authorization": f"Bearer {KEY}"}
"""The headers of a request by ``TENANT``."""
OTHER = {"Authorization": f"Bearer {OTHER_KEY}"}
"""The headers of a request by another tenant (``t-b``)."""


@contextmanager
def api(store: RecordStore) -> Iterator[tuple[TestClient, LocalRuntime]]:
    """A client of the API app whose routes call a ``LocalRuntime`` on ``store``; on the
    way out, checks that nothing started Ray (when it was not running before: in a session
    whose integration tests run a cluster, tests/unit/test_routes_without_ray.py proves it
    in a process of its own)."""
    import ray

    running_before = ray.is_initialized()

    from serve_app import KeyStore, build_app
    from serve_app._front import runtime

    rt = LocalRuntime(store)
    app = build_app(KeyStore.parse(f"{TENANT}:{KEY},t-b:{OTHER_KEY}"), session_records=rt)
    app.dependency_overrides[runtime] = lambda: rt
    with TestClient(app) as client:
        yield client, rt
    assert running_before or not ray.is_initialized(), "a route test started Ray"
