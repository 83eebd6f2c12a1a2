"""Routes of a person in the loop: answer a task's question, approve or reject the actions it
waits on, pause and resume it (with its subtree), and see the screen it asked about.

What a task waits on is in ``GET /v1/tasks/{id}`` (``waiting``: the question, or the
actions and why, and the screenshot's address). A call that does not fit the task's state
(answering a task that asked nothing, resuming one not paused, any call on an ended task)
answers 409 ``conflict``; an unknown task or another tenant's, 404.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations.
from typing import Annotated

from fastapi import APIRouter, Body, Response
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.domain import TaskInfo
from orchestrator.errors import NotFoundError

from ._front import Rt, Tenant

__all__ = ["Answer", "Approval", "Pause", "Rejection", "router"]

MAX_ANSWER_CHARS = 20_000
"""The longest answer (a question may be as long: ``Ask.question``)."""
MAX_REASON_CHARS = 4_000
"""The longest reason given for a rejection."""

router = APIRouter(prefix="/v1", tags=["a person in the loop"])


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class Answer(_Model):
    """A person's answer to the question a task waits on."""

    text: Annotated[str, Field(min_length=1, max_length=MAX_ANSWER_CHARS)]
    """The answer; the agent goes on with it in its history."""


class Approval(_Model):
    """Approval of the actions a task waits on (no fields: an empty object, or no body)."""


class Rejection(_Model):
    """A refusal of the actions a task waits on."""

    reason: Annotated[str, Field(min_length=1, max_length=MAX_REASON_CHARS)]
    """Why: the step fails with it, and the agent decides again knowing it."""


class Pause(_Model):
    """Which part of the task tree a pause or a resume is for."""

    subtree: bool = True
    """Also every open subtask below the task (recursively); false: the task alone."""


@router.post("/tasks/{task_id}/answer")
async def answer(rt: Rt, tenant: Tenant, task_id: str, body: Answer) -> TaskInfo:
    """Answer the task's question (it is ``input_required``): it goes on with the answer."""
    return await rt.answer(task_id, body.text, tenant)


@router.post("/tasks/{task_id}/approve")
async def approve(
    rt: Rt, tenant: Tenant, task_id: str, body: Annotated[Approval | None, Body()] = None
) -> TaskInfo:
    """Approve the actions the task waits on (it is ``approval_required``): they are
    carried out."""
    return await rt.approve(task_id, tenant)


@router.post("/tasks/{task_id}/reject")
async def reject(rt: Rt, tenant: Tenant, task_id: str, body: Rejection) -> TaskInfo:
    """Refuse the actions the task waits on (it is ``approval_required``): the step fails
    with the reason, on the task's timeline and in its agent's history."""
    return await rt.reject(task_id, body.reason, tenant)


@router.post("/tasks/{task_id}/pause")
async def pause(
    rt: Rt, tenant: Tenant, task_id: str, body: Annotated[Pause | None, Body()] = None
) -> TaskInfo:
    """Pause the task (and by default its open subtasks): each turns ``paused`` before its
    next step (a step in flight finishes) and takes no action until resumed. A task that
    waits on its subtasks pauses before it checks them."""
    return await rt.pause(task_id, tenant, subtree=(body or Pause()).subtree)


@router.post("/tasks/{task_id}/resume")
async def resume(
    rt: Rt, tenant: Tenant, task_id: str, body: Annotated[Pause | None, Body()] = None
) -> TaskInfo:
    """Resume the paused task (and by default its paused subtasks); 409 when none was."""
    return await rt.resume(task_id, tenant, subtree=(body or Pause()).subtree)


@router.get(
    "/tasks/{task_id}/waiting/screenshot",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
)
async def waiting_screenshot(rt: Rt, tenant: Tenant, task_id: str) -> Response:
    """The screen the agent decided on when it asked (or asked for approval): JPEG; 404
    when the task waits for no answer or approval."""
    task = await rt.task(task_id, tenant)
    address = task.waiting.screenshot if task.waiting is not None else None
    if address is None or not task.state.waits_for_person:
        raise NotFoundError(f"task {task_id} waits for no answer or approval")
    return Response(content=await rt.blob(address), media_type="image/jpeg")
