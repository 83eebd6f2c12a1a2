"""The HTTP API: a FastAPI app over ``actors.Runtime``, served by a Ray Serve deployment.

The deployment holds no state of its own: every request finds the cluster's recorder by
name and goes through ``Runtime`` with the tenant of the caller's API key, so replicas can
be added, removed or replaced at any time.
"""

# No ``from __future__ import annotations`` here: Serve pickles the app by value, and the
# routes' annotations must be real objects, not names to look up in a module later.
import logging
from typing import Annotated, Any, Literal

import ray
from fastapi import APIRouter, Body, Depends, FastAPI, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from actors import Runtime
from actors._names import NAMESPACE, RECORDER_NAME
from orchestrator import actions as a
from orchestrator.domain import AgentInfo, AgentSpec, AgentTree, Event, TaskInfo, TaskSpec
from orchestrator.errors import RecordError

from ._auth import KeyStore, configure, current_keys, tenant_of
from ._errors import BodyLimit, error_body, install_error_handlers

__all__ = ["ApiDeployment", "EventPage", "ShellRequest", "build_app"]

log = logging.getLogger(__name__)

Tenant = Annotated[str, Depends(tenant_of)]
"""The tenant of the request's API key (401 without a valid one)."""

EVENTS_MAX_LIMIT = 1000


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ShellRequest(_Model):
    """A command to run on an agent's desktop."""

    command: Annotated[str, Field(min_length=1, max_length=100_000)]
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    user: Literal["agent", "root"] = "agent"


class EventPage(_Model):
    """A page of a task's events, oldest first."""

    events: list[Event]
    next_after_seq: int
    """Pass as ``after_seq`` to get the next page."""
    has_more: bool
    """True when the page is full (more events may follow)."""


class Health(_Model):
    status: Literal["ok"] = "ok"


def runtime() -> Runtime:
    """The runtime of the cluster this process is connected to.

    The recorder is looked up by name on every request (one GCS round trip): a replica keeps
    no handle that could go stale when the recorder is replaced.
    """
    try:
        recorder = ray.get_actor(RECORDER_NAME, namespace=NAMESPACE)
    except ValueError:
        raise RecordError("the recorder is not running on this cluster") from None
    return Runtime(recorder)


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {"application/json": {"example": error_body(c, text)}}}
    for code, c, text in [
        (401, "unauthorized", "missing or invalid API key"),
        (404, "not_found", "no such agent or task for this tenant"),
        (409, "conflict", "the agent cannot do this now"),
        (413, "body_too_large", "request body over the limit"),
        (422, "invalid_request", "the request fails validation"),
        (503, "unavailable", "the cluster is unavailable; retry later"),
    ]
}


def _routes() -> APIRouter:
    r = APIRouter(prefix="/v1", responses=_ERRORS)

    # ------------------------------------------------------------------ agents

    @r.post("/agents", status_code=201, tags=["agents"])
    async def create_agent(tenant: Tenant, spec: AgentSpec) -> AgentInfo:
        """Create a top-level agent with its desktop; answers once it is ready."""
        return await runtime().create_agent(tenant, spec)

    @r.get("/agents", tags=["agents"])
    async def list_agents(tenant: Tenant) -> list[AgentInfo]:
        return await runtime().list_agents(tenant)

    @r.get("/agents/{agent_id}", tags=["agents"])
    async def get_agent(tenant: Tenant, agent_id: str) -> AgentInfo:
        return await runtime().agent(agent_id, tenant)

    @r.get("/agents/{agent_id}/tree", tags=["agents"])
    async def agent_tree(tenant: Tenant, agent_id: str) -> AgentTree:
        handle = await runtime().handle(agent_id, tenant)
        tree: AgentTree = await handle.tree.remote()
        return tree

    @r.post("/agents/{agent_id}/children", status_code=201, tags=["agents"])
    async def hire(tenant: Tenant, agent_id: str, spec: AgentSpec) -> AgentInfo:
        """Hire a child of this agent (its own actor and desktop)."""
        handle = await runtime().handle(agent_id, tenant)
        info: AgentInfo = await handle.hire.remote(spec)
        return info

    @r.delete("/agents/{agent_id}", status_code=204, tags=["agents"])
    async def fire(tenant: Tenant, agent_id: str) -> Response:
        """Fire an agent: its subtree and their desktops go too."""
        await runtime().fire(agent_id, tenant)
        return Response(status_code=204)

    # ------------------------------------------------------------------ tasks

    @r.post("/agents/{agent_id}/tasks", status_code=202, tags=["tasks"])
    async def assign(tenant: Tenant, agent_id: str, spec: TaskSpec) -> TaskInfo:
        """Give the agent a task; answers at once with the pending task."""
        return await runtime().assign(agent_id, spec, tenant)

    @r.get("/tasks/{task_id}", tags=["tasks"])
    async def get_task(tenant: Tenant, task_id: str) -> TaskInfo:
        return await runtime().task(task_id, tenant)

    @r.post("/tasks/{task_id}/cancel", tags=["tasks"])
    async def cancel_task(tenant: Tenant, task_id: str) -> TaskInfo:
        return await runtime().cancel(task_id, tenant)

    @r.get("/tasks/{task_id}/events", tags=["tasks"])
    async def task_events(
        tenant: Tenant,
        task_id: str,
        after_seq: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=EVENTS_MAX_LIMIT)] = 100,
    ) -> EventPage:
        """The task's events with ``seq > after_seq``, oldest first."""
        rt = runtime()
        await rt.task(task_id, tenant)
        events = await rt.events(task_id=task_id, after_seq=after_seq, limit=limit)
        last = max((e.seq or 0 for e in events), default=after_seq)
        return EventPage(events=events, next_after_seq=last, has_more=len(events) >= limit)

    # ------------------------------------------------------------------ the desktop

    @r.get(
        "/agents/{agent_id}/screenshot",
        tags=["desktop"],
        response_class=Response,
        responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}},
    )
    async def screenshot(
        tenant: Tenant,
        agent_id: str,
        format: Literal["png", "jpeg"] = "png",
        quality: Annotated[int, Query(ge=1, le=100)] = 85,
    ) -> Response:
        handle = await runtime().handle(agent_id, tenant)
        data: bytes = await handle.screenshot.remote(format, quality)
        return Response(content=data, media_type=f"image/{format}")

    @r.post("/agents/{agent_id}/actions", tags=["desktop"])
    async def act(
        tenant: Tenant, agent_id: str, action: Annotated[a.Action, Body()]
    ) -> a.ActionResult:
        """Carry out one action; a failed action is ``ok: false`` with its reason (200)."""
        handle = await runtime().handle(agent_id, tenant)
        result: a.ActionResult = await handle.act.remote(action)
        return result

    @r.post("/agents/{agent_id}/shell", tags=["desktop"])
    async def shell(tenant: Tenant, agent_id: str, req: ShellRequest) -> a.CommandResult:
        """Run a command on the desktop; a failing command is a result, not an error."""
        handle = await runtime().handle(agent_id, tenant)
        result: a.CommandResult = await handle.shell.remote(req.command, req.timeout_s, req.user)
        return result

    return r


def build_app(keys: KeyStore | None = None) -> FastAPI:
    """The FastAPI app (``keys``: the API keys; default: from the environment)."""
    if keys is not None:
        configure(keys)
    app = FastAPI(
        title="orchestrator",
        version="1",
        description="Agents that each own a Linux desktop, organised in a hierarchy. "
        "Every route but /healthz needs `Authorization: Bearer <API key>`.",
    )
    install_error_handlers(app)
    app.add_middleware(BodyLimit)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> Health:
        """Liveness; needs no key."""
        return Health()

    app.include_router(_routes())
    return app


app = build_app()


@serve.deployment(
    name="orchestrator-api",
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 16},
    max_ongoing_requests=64,
    max_queued_requests=256,
    health_check_period_s=10,
    health_check_timeout_s=30,
    ray_actor_options={"num_cpus": 0},
)
@serve.ingress(app)
class ApiDeployment:
    """The API's replicas: stateless, all state lives in the agent actors and the recorder."""

    def __init__(self, keys_file: str | None = None) -> None:
        configure(KeyStore.from_env(keys_file))

    def check_health(self) -> None:
        """Serve calls this periodically; raising marks the replica unhealthy."""
        current_keys()
