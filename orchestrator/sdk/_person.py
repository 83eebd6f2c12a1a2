"""The calls of a person in the loop (``POST /v1/tasks/{id}/answer`` and the others): what the
sync and async ``Task`` send when a person answers, approves, rejects, pauses or resumes."""

from __future__ import annotations

from typing import Any

import httpx

from ..domain import TaskInfo
from ._http import Call

__all__ = ["person_calls"]


def _task(r: httpx.Response) -> TaskInfo:
    return TaskInfo.model_validate_json(r.content)


def _post(task_id: str, what: str, body: dict[str, Any]) -> Call[TaskInfo]:
    return Call("POST", f"/v1/tasks/{task_id}/{what}", _task, body=body)


class person_calls:  # noqa: N801 - a namespace of call builders, like ``calls``
    """Builders of a person's calls on a task (each answers the task as it is then)."""

    @staticmethod
    def answer(task_id: str, text: str) -> Call[TaskInfo]:
        return _post(task_id, "answer", {"text": text})

    @staticmethod
    def approve(task_id: str) -> Call[TaskInfo]:
        return _post(task_id, "approve", {})

    @staticmethod
    def reject(task_id: str, reason: str) -> Call[TaskInfo]:
        return _post(task_id, "reject", {"reason": reason})

    @staticmethod
    def pause(task_id: str, subtree: bool) -> Call[TaskInfo]:
        return _post(task_id, "pause", {"subtree": subtree})

    @staticmethod
    def resume(task_id: str, subtree: bool) -> Call[TaskInfo]:
        return _post(task_id, "resume", {"subtree": subtree})

    @staticmethod
    def waiting_screenshot(task_id: str) -> Call[bytes]:
        return Call("GET", f"/v1/tasks/{task_id}/waiting/screenshot", lambda r: r.content)
