"""Routes of tasks: assign, read, list, cancel, pin, events and their live stream."""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations.
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import StreamingResponse

from orchestrator.domain import TaskInfo, TaskSpec, TaskState

from ._front import Caller, Rt, Tenant
from ._models import EventPage, TaskPin
from ._stream import EVENTS_MAX_LIMIT, open_stream

__all__ = ["TASKS_MAX_LIMIT", "router"]

TASKS_MAX_LIMIT = 1000
SEQ = Annotated[int, Query(ge=0, le=2**63 - 1)]

router = APIRouter(prefix="/v1", tags=["tasks"])


@router.post("/agents/{agent_id}/tasks", status_code=202)
async def assign(rt: Rt, tenant: Tenant, agent_id: str, spec: TaskSpec) -> TaskInfo:
    """Give the agent a task; answers at once with the pending task."""
    return await rt.assign(agent_id, spec, tenant)


@router.get("/tasks/{task_id}", response_model=TaskInfo)
async def get_task(rt: Rt, tenant: Tenant, task_id: str) -> Response:
    """The task: state, subtasks, result (the API's hottest read: serialised once)."""
    task = await rt.task(task_id, tenant)
    return Response(task.model_dump_json(), media_type="application/json")


@router.post("/tasks/{task_id}/cancel")
async def cancel_task(rt: Rt, tenant: Tenant, task_id: str) -> TaskInfo:
    return await rt.cancel(task_id, tenant)


@router.post("/tasks/{task_id}/pin")
async def pin_task(rt: Rt, tenant: Tenant, task_id: str) -> TaskPin:
    """Pin the task's run (it and its subtasks, their events, screenshots and files):
    garbage collection keeps it whatever its age (``ORCHESTRATOR_RECORDS_RETENTION_DAYS``)."""
    await rt.pin(task_id, True, tenant)
    return TaskPin(task_id=task_id, pinned=True)


@router.delete("/tasks/{task_id}/pin")
async def unpin_task(rt: Rt, tenant: Tenant, task_id: str) -> TaskPin:
    """Unpin the task: its run is removed once it is older than the retention period."""
    await rt.pin(task_id, False, tenant)
    return TaskPin(task_id=task_id, pinned=False)


@router.get("/tasks/{task_id}/events")
async def task_events(
    rt: Rt,
    tenant: Tenant,
    task_id: str,
    after_seq: SEQ = 0,
    limit: Annotated[int, Query(ge=1, le=EVENTS_MAX_LIMIT)] = 100,
) -> EventPage:
    """The task's events with ``seq > after_seq``, oldest first."""
    await rt.task(task_id, tenant)
    events = await rt.events(task_id=task_id, after_seq=after_seq, limit=limit)
    last = max((e.seq or 0 for e in events), default=after_seq)
    return EventPage(events=events, next_after_seq=last, has_more=len(events) >= limit)


@router.get("/tasks")
async def list_tasks(
    rt: Rt,
    tenant: Tenant,
    state: TaskState | None = None,
    agent_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=TASKS_MAX_LIMIT)] = 100,
    offset: SEQ = 0,
) -> list[TaskInfo]:
    """The tenant's tasks, newest first (``offset``/``limit`` to page)."""
    return await rt.list_tasks(tenant, agent_id=agent_id, state=state, limit=limit, offset=offset)


@router.get(
    "/tasks/{task_id}/events/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def task_event_stream(
    rt: Rt,
    caller: Caller,
    task_id: str,
    after_seq: SEQ = 0,
    last_event_id: Annotated[int | None, Header(alias="Last-Event-ID", ge=0, le=2**63 - 1)] = None,
) -> StreamingResponse:
    """The task's events live as Server-Sent Events (``id:`` is the seq, ``data:`` the
    event); resumes after ``Last-Event-ID`` or ``after_seq``; ends once the task is done
    and all its events were sent, or (``event: end``) within seconds of the caller's key
    being revoked or its console session ended."""
    await rt.task(task_id, caller.tenant)
    return open_stream(rt, caller, task_id, max(after_seq, last_event_id or 0))
