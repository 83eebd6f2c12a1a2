"""The HTTP API: a FastAPI app over ``actors.Runtime``, served by a Ray Serve deployment.

The deployment holds no state of its own: every request goes through ``Runtime`` (the
cluster's recorder, its handle kept per process and looked up again when the recorder is
replaced) with the tenant of the caller's API key, so replicas can be added, removed or
replaced at any time.

Serve pickles this app by value: the routes' closures carry copies of the module globals
they name. Mutable state a route shares with module-level code (the stream slots) is reached
through module-level functions only (see ``_open_stream``).
"""

# No ``from __future__ import annotations`` here: Serve pickles the app by value, and the
# routes' annotations must be real objects, not names to look up in a module later.
import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import ray
from fastapi import (
    APIRouter,
    Body,
    Depends,
    FastAPI,
    Header,
    HTTPException,
    Query,
    Request,
    Response,
)
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ray import serve
from ray.serve.config import BackpressureConfig

from actors import Runtime
from orchestrator import actions as a
from orchestrator.config import check_model_url
from orchestrator.domain import (
    AgentInfo,
    AgentSpec,
    AgentStatus,
    AgentTree,
    Event,
    EventKind,
    TaskInfo,
    TaskSpec,
    TaskState,
)
from orchestrator.errors import ConfigError, RecordError
from orchestrator.workflow import load_workflow

from ._auth import KeyStore, RecordKeys, configure, current_keys, records_fetch, tenant_of
from ._errors import BodyLimit, error_body, install_error_handlers, validation_message
from ._files import MAX_UPLOAD_BYTES, UPLOAD_PATH
from ._files import routes as file_routes
from ._grpc_bind import bind_replica_grpc_to_node_address
from ._limit import (
    DEFAULT_MAX_CONCURRENT,
    DEFAULT_MAX_STREAMS,
    ENV_MAX_CONCURRENT,
    ENV_MAX_STREAMS,
    RETRY_AFTER_S,
    ConcurrencyLimit,
    Slots,
    env_limit,
)

__all__ = [
    "ApiDeployment",
    "EventPage",
    "LiveViewLink",
    "ShellRequest",
    "Stats",
    "TaskPin",
    "WorkflowRequest",
    "WorkflowStarted",
    "build_app",
]

log = logging.getLogger(__name__)

Tenant = Annotated[str, Depends(tenant_of)]
"""The tenant of the request's API key (401 without a valid one)."""

EVENTS_MAX_LIMIT = 1000
TASKS_MAX_LIMIT = 1000
STATS_PAGE = 10_000
"""Page size when counting a tenant's records (the records' own maximum)."""

STREAM_POLL_S = 0.25
"""How often an event stream looks for new events."""
STREAM_FINAL_GRACE_S = 5.0
"""How long a stream waits for a finished task's final event before it ends anyway."""
ENV_KEEPALIVE_S = "ORCHESTRATOR_API_SSE_KEEPALIVE_S"
DEFAULT_KEEPALIVE_S = 15.0
STREAM_MAX_ERRORS = 20
"""Consecutive failed polls (recorder unavailable) after which a stream ends."""

_streams = Slots(ENV_MAX_STREAMS, DEFAULT_MAX_STREAMS)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ShellRequest(_Model):
    """A command to run on an agent's desktop."""

    command: a.ShellCommand
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    user: Literal["agent", "root"] = "agent"


class EventPage(_Model):
    """A page of a task's events, oldest first."""

    events: list[Event]
    next_after_seq: int
    """Pass as ``after_seq`` to get the next page."""
    has_more: bool
    """True when the page is full (more events may follow)."""


class TaskPin(_Model):
    """Whether a task's run is pinned: kept by garbage collection whatever its age."""

    task_id: str
    pinned: bool


class LiveViewLink(_Model):
    """A noVNC page on 127.0.0.1 for watching the desktop; the URL holds its VNC password."""

    url: str
    expires: float | None = None
    """When the link stops working (epoch seconds); None: while the desktop runs."""


class WorkflowRequest(_Model):
    """A workflow file's YAML text, in a JSON body."""

    yaml: Annotated[str, Field(min_length=1)]


class WorkflowStarted(_Model):
    """The workflow's top-level agent and the task it was given."""

    agent: AgentInfo
    task: TaskInfo


class Stats(_Model):
    """The tenant's agents by status and tasks by state."""

    agents: dict[AgentStatus, int]
    tasks: dict[TaskState, int]


class Health(_Model):
    status: Literal["ok"] = "ok"


def runtime() -> Runtime:
    """The runtime of the cluster this process is connected to.

    The recorder is looked up by name once per process and kept (no GCS round trip per
    request); a call that finds it dead looks it up again, so a replaced recorder is found
    (see ``actors.RecorderRef``). ``RecordError`` when no recorder is running.
    """
    return Runtime.shared()


def _keepalive_s() -> float:
    raw = os.environ.get(ENV_KEEPALIVE_S, "").strip()
    try:
        value = float(raw) if raw else DEFAULT_KEEPALIVE_S
    except ValueError:
        raise ConfigError(f"{ENV_KEEPALIVE_S} must be a number of seconds, not {raw!r}") from None
    return value if value > 0 else DEFAULT_KEEPALIVE_S


def _sse(event: Event) -> str:
    return f"id: {event.seq}\ndata: {event.model_dump_json()}\n\n"


def _is_final(event: Event) -> bool:
    state = event.data.get("state")
    return (
        event.kind == EventKind.TASK
        and isinstance(state, str)
        and state in {s.value for s in TaskState if s.done}
    )


async def _event_stream(rt: Runtime, task_id: str, after_seq: int) -> AsyncIterator[str]:
    """The task's events after ``after_seq`` as SSE, live, until it is done and all are sent.

    Ends once the task is in a final state and its final ``task`` event was sent (or
    ``STREAM_FINAL_GRACE_S`` after it was seen finished without one); a comment is sent
    every ``ORCHESTRATOR_API_SSE_KEEPALIVE_S`` seconds while nothing happens.
    """
    keepalive_s = _keepalive_s()
    cursor = after_seq
    final_sent = False
    done_since: float | None = None
    last_sent = time.monotonic()
    errors = 0
    yield ": stream of task " + task_id + "\n\n"
    while True:
        try:
            # The state is read before the events: when it is final, every event written
            # before it is in the reads that follow.
            task = await rt.task(task_id)
            batch = await rt.events(task_id=task_id, after_seq=cursor, limit=EVENTS_MAX_LIMIT)
            errors = 0
        except (RecordError, ray.exceptions.RayError) as e:
            errors += 1
            if errors >= STREAM_MAX_ERRORS:
                log.warning("event stream of %s ends: %s", task_id, e)
                return
            await asyncio.sleep(STREAM_POLL_S * 2)
            try:
                rt = runtime()
            except RecordError:
                pass
            continue
        for event in batch:
            yield _sse(event)
            cursor = max(cursor, event.seq or cursor)
            final_sent = final_sent or _is_final(event)
        if batch:
            last_sent = time.monotonic()
        if len(batch) >= EVENTS_MAX_LIMIT:
            continue  # more are waiting
        if task.state.done:
            if final_sent:
                return
            done_since = done_since or time.monotonic()
            if time.monotonic() - done_since >= STREAM_FINAL_GRACE_S:
                return
        if time.monotonic() - last_sent >= keepalive_s:
            yield ": keep-alive\n\n"
            last_sent = time.monotonic()
        await asyncio.sleep(STREAM_POLL_S)


class _SlotStream(StreamingResponse):
    """An event stream that gives its slot back when the response ends, however it ends
    (also when the client is gone before the first byte and the body never starts)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            _streams.give_back()


def _open_stream(rt: Runtime, task_id: str, after_seq: int) -> StreamingResponse:
    """The event stream of a task, in one of the replica's stream slots (429 when none is
    free). Module-level on purpose: Serve pickles the routes' closures by value, with copies
    of the globals they name; the slots must be the module's own, as ``_SlotStream`` uses."""
    if not _streams.try_take():
        raise HTTPException(
            429,
            f"too many open event streams (limit {_streams.limit}); retry later",
            headers={"Retry-After": "1"},
        )
    return _SlotStream(
        _event_stream(rt, task_id, after_seq),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _check_brain(spec: AgentSpec) -> None:
    """422 before anything starts when the brain names a model API the cluster refuses."""
    if spec.brain.base_url is not None:
        check_model_url(spec.brain.base_url)  # ConfigError: 422 naming the field


async def _workflow_text(request: Request) -> str:
    """The YAML text of a workflow request: a ``text/yaml`` body or JSON ``{"yaml": ...}``."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    if ctype == "application/json":
        try:
            data = json.loads(raw)
        except ValueError as e:
            raise HTTPException(422, f"malformed JSON body: {e}") from None
        except RecursionError:
            raise HTTPException(422, "malformed JSON body: nested too deeply") from None
        try:
            return WorkflowRequest.model_validate(data).yaml
        except ValidationError as e:
            errors = [{**err, "loc": ("body", *err["loc"])} for err in e.errors()]
            raise HTTPException(422, validation_message(errors)) from None
    if ctype in _YAML_TYPES:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise HTTPException(422, "the workflow is not UTF-8 text") from None
    raise HTTPException(
        415, 'send the workflow as Content-Type: text/yaml, or as JSON {"yaml": "..."}'
    )


_YAML_TYPES = ("text/yaml", "application/yaml", "application/x-yaml", "text/x-yaml", "text/plain")

_WORKFLOW_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "text/yaml": {"schema": {"type": "string"}},
            "application/json": {"schema": WorkflowRequest.model_json_schema()},
        },
    }
}


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {"application/json": {"example": error_body(c, text)}}}
    for code, c, text in [
        (401, "unauthorized", "missing or invalid API key"),
        (404, "not_found", "no such agent or task for this tenant"),
        (409, "conflict", "the agent cannot do this now"),
        (413, "body_too_large", "request body over the limit"),
        (422, "invalid_request", "the request fails validation"),
        (
            429,
            "too_many_requests",
            "too many concurrent requests (retry after Retry-After), or `quota_exceeded`: the "
            "tenant is at a quota (the message names it, its limit and the count)",
        ),
        (503, "unavailable", "the cluster is unavailable; retry later"),
    ]
}


def _routes() -> APIRouter:
    r = APIRouter(prefix="/v1", responses=_ERRORS)

    # ------------------------------------------------------------------ agents

    @r.post("/agents", status_code=201, tags=["agents"])
    async def create_agent(tenant: Tenant, spec: AgentSpec) -> AgentInfo:
        """Create a top-level agent with its desktop; answers once it is ready."""
        _check_brain(spec)
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
        _check_brain(spec)
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

    @r.get("/tasks/{task_id}", tags=["tasks"], response_model=TaskInfo)
    async def get_task(tenant: Tenant, task_id: str) -> Response:
        """The task: state, subtasks, result (the API's hottest read: serialised once)."""
        task = await runtime().task(task_id, tenant)
        return Response(task.model_dump_json(), media_type="application/json")

    @r.post("/tasks/{task_id}/cancel", tags=["tasks"])
    async def cancel_task(tenant: Tenant, task_id: str) -> TaskInfo:
        return await runtime().cancel(task_id, tenant)

    @r.post("/tasks/{task_id}/pin", tags=["tasks"])
    async def pin_task(tenant: Tenant, task_id: str) -> TaskPin:
        """Pin the task's run (it and its subtasks, their events, screenshots and files):
        garbage collection keeps it whatever its age (``ORCHESTRATOR_RECORDS_RETENTION_DAYS``)."""
        return await _pin(tenant, task_id, True)

    @r.delete("/tasks/{task_id}/pin", tags=["tasks"])
    async def unpin_task(tenant: Tenant, task_id: str) -> TaskPin:
        """Unpin the task: its run is removed once it is older than the retention period."""
        return await _pin(tenant, task_id, False)

    async def _pin(tenant: str, task_id: str, pinned: bool) -> TaskPin:
        rt = runtime()
        await rt.task(task_id, tenant)  # 404 for an unknown id or another tenant's
        await rt.recorder.pin_task.remote(task_id, pinned)
        return TaskPin(task_id=task_id, pinned=pinned)

    @r.get("/tasks/{task_id}/events", tags=["tasks"])
    async def task_events(
        tenant: Tenant,
        task_id: str,
        after_seq: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
        limit: Annotated[int, Query(ge=1, le=EVENTS_MAX_LIMIT)] = 100,
    ) -> EventPage:
        """The task's events with ``seq > after_seq``, oldest first."""
        rt = runtime()
        await rt.task(task_id, tenant)
        events = await rt.events(task_id=task_id, after_seq=after_seq, limit=limit)
        last = max((e.seq or 0 for e in events), default=after_seq)
        return EventPage(events=events, next_after_seq=last, has_more=len(events) >= limit)

    @r.get("/tasks", tags=["tasks"])
    async def list_tasks(
        tenant: Tenant,
        state: TaskState | None = None,
        agent_id: str | None = None,
        limit: Annotated[int, Query(ge=1, le=TASKS_MAX_LIMIT)] = 100,
        offset: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    ) -> list[TaskInfo]:
        """The tenant's tasks, newest first (``offset``/``limit`` to page)."""
        rt = runtime()
        if agent_id is not None:
            await rt.agent(agent_id, tenant)
        tasks: list[TaskInfo] = await rt.recorder.list_tasks.remote(
            agent_id=agent_id, tenant=tenant, state=state, limit=limit, offset=offset
        )
        return tasks

    @r.get(
        "/tasks/{task_id}/events/stream",
        tags=["tasks"],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def task_event_stream(
        tenant: Tenant,
        task_id: str,
        after_seq: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
        last_event_id: Annotated[
            int | None, Header(alias="Last-Event-ID", ge=0, le=2**63 - 1)
        ] = None,
    ) -> StreamingResponse:
        """The task's events live as Server-Sent Events (``id:`` is the seq, ``data:`` the
        event); resumes after ``Last-Event-ID`` or ``after_seq``; ends once the task is done
        and all its events were sent."""
        rt = runtime()
        await rt.task(task_id, tenant)
        return _open_stream(rt, task_id, max(after_seq, last_event_id or 0))

    # ------------------------------------------------------------------ workflows

    @r.post("/workflows", status_code=202, tags=["workflows"], openapi_extra=_WORKFLOW_BODY)
    async def start_workflow(tenant: Tenant, request: Request) -> WorkflowStarted:
        """Create a workflow's top-level agent in the caller's tenant (the file's ``tenant``
        is ignored) and give it the workflow's task."""
        text = await _workflow_text(request)
        try:  # in a thread: a large file must not stall the replica's other requests
            wf = await asyncio.to_thread(load_workflow, text)
        except ConfigError as e:
            raise HTTPException(422, str(e)) from None
        _check_brain(wf.agent)
        rt = runtime()
        agent = await rt.create_agent(tenant, wf.agent)
        try:
            task = await rt.assign(agent.id, wf.task, tenant)
        except Exception:
            try:  # leave no agent behind that nobody asked for
                await rt.fire(agent.id, tenant)
            except Exception:  # noqa: BLE001 - the assign error is the one to report
                log.exception("could not fire %s after a failed workflow start", agent.id)
            raise
        return WorkflowStarted(agent=await rt.agent(agent.id, tenant), task=task)

    # ------------------------------------------------------------------ stats

    @r.get("/stats", tags=["stats"])
    async def stats(tenant: Tenant) -> Stats:
        """The tenant's agents by status and tasks by state."""
        rt = runtime()
        agents: list[AgentInfo] = await rt.recorder.list_agents.remote(
            tenant=tenant, limit=STATS_PAGE
        )
        by_status = dict.fromkeys(AgentStatus, 0)
        for agent in agents:
            by_status[agent.status] += 1
        by_state = dict.fromkeys(TaskState, 0)
        offset = 0
        while True:
            page: list[TaskInfo] = await rt.recorder.list_tasks.remote(
                tenant=tenant, limit=STATS_PAGE, offset=offset
            )
            for task in page:
                by_state[task.state] += 1
            if len(page) < STATS_PAGE:
                break
            offset += len(page)
        return Stats(agents=by_status, tasks=by_state)

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

    @r.get("/agents/{agent_id}/live-view", tags=["desktop"])
    async def live_view(tenant: Tenant, agent_id: str, response: Response) -> LiveViewLink:
        """A noVNC link on 127.0.0.1 to watch the desktop; it holds the VNC password."""
        handle = await runtime().handle(agent_id, tenant)
        view = await handle.live_view.remote()
        response.headers["Cache-Control"] = "no-store"
        return LiveViewLink(url=view.url, expires=None)

    @r.post("/agents/{agent_id}/desktop/reset", tags=["desktop"])
    async def reset_desktop(tenant: Tenant, agent_id: str) -> AgentInfo:
        """Replace the agent's desktop with a new one of its spec: a new container and socket
        directory, nothing of the old desktop kept (for one broken from inside, e.g. its
        ``/etc/passwd`` overwritten). 409 while a task of the agent runs: cancel it first."""
        handle = await runtime().handle(agent_id, tenant)
        info: AgentInfo = await handle.reset_desktop.remote()
        return info

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
    app.add_middleware(BodyLimit, overrides=[("PUT", UPLOAD_PATH, MAX_UPLOAD_BYTES)])
    app.add_middleware(ConcurrencyLimit)  # outermost: refuses before reading anything

    @app.get("/healthz", tags=["health"])
    async def healthz() -> Health:
        """Liveness; needs no key."""
        return Health()

    app.include_router(_routes())
    app.include_router(file_routes(runtime, Depends(tenant_of)), responses=_ERRORS)
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
    ray_actor_options={"num_cpus": 0},
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
