"""The API's own request and response bodies (the domain's models are used as they are)."""

# No ``from __future__ import annotations``: FastAPI reads these models' annotations.
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from orchestrator import actions as a
from orchestrator.domain import AgentInfo, AgentStatus, Event, TaskInfo, TaskState

from ._errors import error_body

__all__ = [
    "ERRORS",
    "EventPage",
    "Health",
    "LiveViewLink",
    "ReplayAgent",
    "ReplayMoment",
    "ShellRequest",
    "Stats",
    "TaskPin",
    "WorkflowRequest",
    "WorkflowStarted",
]


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


class ReplayAgent(_Model):
    """One agent at a moment of the replay."""

    agent_id: str
    path: str
    status: str | None
    """Its status then (the latest it recorded at or before the moment), if it said one."""
    screenshot: str | None
    """The blob address of the latest screen it saw at or before the moment
    (``GET /v1/blobs/{address}``), or None."""
    shot_at: float | None
    """When that screen was seen (unix seconds)."""


class ReplayMoment(_Model):
    """Every agent of the tenant at a moment, and the events of the 30 s before it."""

    at: float
    agents: list[ReplayAgent]
    events: list[Event]
    """Oldest first."""


class Health(_Model):
    status: Literal["ok"] = "ok"


ERRORS: dict[int | str, dict[str, Any]] = {
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
"""The error answers every route documents (one shape, see ``serve_app._errors``)."""
