"""A typed Python client of the HTTP API (``serve_app``), sync and async.

The README's main job, the web server built by a team of agents, from a notebook::

    from pathlib import Path
    from orchestrator.sdk import Client
    from orchestrator.workflow import load_workflow

    job = load_workflow(Path("examples/web_server.yaml"))
    client = Client("http://127.0.0.1:8000", api_key="...")
    admin = client.create_agent(job.agent)         # a desktop of its own, ready
    task = admin.assign(job.task).wait()           # a progress bar while the team works
    print(task.state, task.result)
    admin.screenshot()                             # shown inline

A task that asks a question or waits for approval is answered by a person::

    task = admin.assign(job.task)
    while not task.wait(until_person=True).done:   # returns when it needs a person, too
        if task.waiting.question is not None:
            task.answer(input(task.waiting.question))
        else:
            task.approve()                          # or task.reject("why not")

``AsyncClient`` is the same API awaited. Errors the API answers are ``ApiError``s (a
subclass of ``orchestrator.errors.OrchestratorError``) with ``.status`` and ``.code``;
429 and 503 are retried first, honouring ``Retry-After`` (see ``Retry``), but not a 429
``quota_exceeded`` (``QuotaExceededError``: waiting alone does not free a quota).
"""

from __future__ import annotations

# The one import of the top layer from the SDK (an ignore_imports entry of the layers contract
# in pyproject.toml): start_local() starts a local cluster, but imports none of it until called.
from .._start_local import start_local
from ._aio import AsyncAgent, AsyncClient, AsyncTask
from ._client import Agent, Client, Task
from ._errors import (
    ApiError,
    AuthError,
    ConflictError,
    ForbiddenError,
    InvalidRequestError,
    NotFoundError,
    QuotaExceededError,
    UnavailableError,
)
from ._http import Call, EventPage, RemoteFile, Retry, Screenshot, calls
from ._live import LiveViewUrl, TaskDisplay

__all__ = [
    "Agent",
    "ApiError",
    "AsyncAgent",
    "AsyncClient",
    "AsyncTask",
    "AuthError",
    "Call",
    "Client",
    "ConflictError",
    "EventPage",
    "ForbiddenError",
    "InvalidRequestError",
    "LiveViewUrl",
    "NotFoundError",
    "QuotaExceededError",
    "RemoteFile",
    "Retry",
    "Screenshot",
    "Task",
    "TaskDisplay",
    "UnavailableError",
    "calls",
    "start_local",
]
