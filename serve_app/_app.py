"""The HTTP API: a FastAPI app over ``orchestrator.front.Runtime``, served by Ray Serve.

The routes live by resource (``_agents``, ``_tasks``, ``_person``: a person's answers,
approvals and pauses, ``_desktop``, ``_files``, ``_workflows``, ``_stats``) and call only
the typed runtime they are handed as a dependency (``serve_app._front.runtime``: the
cluster's ``actors.Runtime`` on a replica, an in-process runtime in route tests). The
deployment holds no state of its own: every request goes through the runtime (the
cluster's recorder, its handle kept per process and looked up again when the recorder is
replaced) with the tenant of the caller's API key, so replicas can be added,
removed or replaced at any time.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the routes' annotations.
from fastapi import FastAPI
from ray import serve
from ray._common.constants import HEAD_NODE_RESOURCE_NAME as HEAD_NODE_RESOURCE
from ray.serve.config import BackpressureConfig

from orchestrator.front import SessionRecords

from . import (
    _agents,
    _console,
    _desktop,
    _files,
    _lease,
    _live,
    _person,
    _relay,
    _session,
    _stats,
    _tasks,
    _workflows,
)
from ._auth import KeyStore, RecordKeys, configure, current_keys, records_fetch
from ._errors import RETRY_AFTER_S, BodyLimit, install_error_handlers
from ._files import MAX_UPLOAD_BYTES, UPLOAD_PATH
from ._grpc_bind import bind_replica_grpc_to_node_address
from ._limit import (
    DEFAULT_MAX_CONCURRENT,
    DEFAULT_MAX_STREAMS,
    ENV_MAX_CONCURRENT,
    ENV_MAX_STREAMS,
    ConcurrencyLimit,
    env_limit,
)
from ._models import ERRORS, Health

__all__ = ["ApiDeployment", "build_app"]

ROUTERS = (
    _agents.router,
    _tasks.router,
    _person.router,
    _workflows.router,
    _stats.router,
    _desktop.router,
    _files.router,
    _session.router,
    _lease.router,
    _live.router,
    _relay.router,
    _console.router,
)
"""Every resource's routes, in the order the OpenAPI document lists them."""


def build_app(
    keys: KeyStore | None = None, session_records: SessionRecords | None = None
) -> FastAPI:
    """The FastAPI app (``keys``: the API keys, default: from the environment;
    ``session_records``: where console sessions are kept, default: the cluster's records)."""
    if keys is not None or session_records is not None:
        configure(keys, session_records=session_records)
    app = FastAPI(
        title="orchestrator",
        version="1",
        description="Agents that each own a Linux desktop, organised in a hierarchy. "
        "Every route but /healthz needs `Authorization: Bearer <API key>` (or the "
        "console's sign-in cookie, from POST /v1/session).",
    )
    install_error_handlers(app)
    app.add_middleware(BodyLimit, overrides=[("PUT", UPLOAD_PATH, MAX_UPLOAD_BYTES)])
    app.add_middleware(ConcurrencyLimit)  # outermost: refuses before reading anything

    @app.get("/healthz", tags=["health"])
    async def healthz() -> Health:
        """Liveness; needs no key."""
        return Health()

    for router in ROUTERS:
        app.include_router(router, responses=ERRORS)
    return app


app = build_app()


MAX_ONGOING = (
    env_limit(ENV_MAX_CONCURRENT, DEFAULT_MAX_CONCURRENT)
    + env_limit(ENV_MAX_STREAMS, DEFAULT_MAX_STREAMS)
    + 16  # /healthz and Serve's own health checks
)
"""What a replica takes at once: Serve counts open event streams as ongoing requests, so
its cap must be above the app's own two (requests, streams), which answer 429 in the one
error shape; were Serve's lower, a few hundred idle streams would stop every replica."""


@serve.deployment(
    name="orchestrator-api",
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 16},
    max_ongoing_requests=MAX_ONGOING,
    max_queued_requests=256,
    # Past the queue too, Serve's own refusal is a 429 with Retry-After (its default: a
    # plain 503 without one).
    backpressure_config=BackpressureConfig(status_code=429, retry_after_s=RETRY_AFTER_S),
    health_check_period_s=10,
    health_check_timeout_s=30,
    logging_config={"enable_access_log": False},
    # On the head only: a worker node may be an autoscaled one that goes away when idle
    # (holding no CPU or desktop, a replica would not keep it), and with Serve's proxies on
    # the head only, a replica elsewhere would be unreachable anyway.
    ray_actor_options={"num_cpus": 0, "resources": {HEAD_NODE_RESOURCE: 0.001}},
)
@serve.ingress(app)
class ApiDeployment:
    """The API's replicas: stateless, all state lives in the agent actors and the recorder."""

    def __init__(self, keys_file: str | None = None) -> None:
        # Before Serve starts this replica's gRPC server: on the node's address, not [::].
        bind_replica_grpc_to_node_address()
        # Keys from the environment or the file, and those `orchestrator keys` keeps in the
        # records (read again every few seconds, on whatever node this replica runs).
        configure(KeyStore.from_env(keys_file), RecordKeys(records_fetch))

    def check_health(self) -> None:
        """Serve calls this periodically; raising marks the replica unhealthy."""
        current_keys()
