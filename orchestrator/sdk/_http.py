"""The request/response layer both clients share: each API call is described once, as a
``Call`` (method, path, parameters, body and how to read the answer); the sync and async
transports only send it, retry on 429/503 and turn error answers into exceptions."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, TypeAdapter

from ..actions import Action, ActionResult, CommandResult, parse_action
from ..domain import AgentInfo, AgentSpec, AgentTree, Event, TaskInfo, TaskSpec, TaskState
from ..usage import Budget
from ._errors import UnavailableError, error_from

__all__ = ["Call", "EventPage", "RemoteFile", "Retry", "Screenshot", "calls"]

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

RETRY_STATUSES = frozenset({429, 503})
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})
"""Methods safe to send again when the answer was lost (the same request, the same effect)."""
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
"""Transport errors before the request left: it did nothing."""
_CUT_OFF = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)
"""The connection broke mid-request (a replica or proxy replaced): it may have done its work."""
SLOW_S = 180.0
"""Answer timeout of the calls that start or stop desktops (create, hire, fire, reset)."""
ACT_S = 360.0
"""Answer timeout of an action (a ``wait`` may last 300 s)."""
TRANSFER_S = 600.0
"""Answer timeout of a file transfer or an artifacts download."""


class EventPage(BaseModel):
    """A page of a task's events, oldest first."""

    model_config = ConfigDict(extra="ignore")

    events: list[Event]
    next_after_seq: int
    """Pass as ``after_seq`` to get the next page."""
    has_more: bool
    """True when the page is full (more events may follow)."""


class Screenshot(bytes):
    """The encoded image (``bytes``) that Jupyter/IPython shows inline.

    Example:
        >>> shot = agent.screenshot()      # doctest: +SKIP
        >>> shot                           # doctest: +SKIP  (a notebook shows the image)
        >>> shot.save("screen.png")        # doctest: +SKIP
    """

    format: Literal["png", "jpeg"]

    def __new__(cls, data: bytes, format: Literal["png", "jpeg"] = "png") -> Screenshot:
        obj = super().__new__(cls, data)
        obj.format = format
        return obj

    def _repr_png_(self) -> bytes | None:
        return bytes(self) if self.format == "png" else None

    def _repr_jpeg_(self) -> bytes | None:
        return bytes(self) if self.format == "jpeg" else None

    def __repr__(self) -> str:
        return f"<Screenshot {self.format}, {len(self)} bytes>"

    def save(self, path: str | Path) -> Path:
        """Write the image to ``path``; returns it."""
        p = Path(path)
        p.write_bytes(self)
        return p


class RemoteFile(bytes):
    """A file read from a desktop (``bytes``); a directory comes as a gzipped tarball."""

    is_dir: bool
    filename: str

    def __new__(cls, data: bytes, is_dir: bool = False, filename: str = "file") -> RemoteFile:
        obj = super().__new__(cls, data)
        obj.is_dir = is_dir
        obj.filename = filename
        return obj

    @classmethod
    def from_response(cls, r: httpx.Response) -> RemoteFile:
        disposition = r.headers.get("Content-Disposition", "")
        name = disposition.partition('filename="')[2].rstrip('"') or "file"
        return cls(r.content, r.headers.get("X-Orchestrator-Kind") == "directory", name)

    def __repr__(self) -> str:
        kind = "directory (tar.gz)" if self.is_dir else "file"
        return f"<RemoteFile {self.filename!r} {kind}, {len(self)} bytes>"


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API call: what to send and how to read a successful answer."""

    method: str
    path: str
    read: Callable[[httpx.Response], T]
    params: dict[str, Any] | None = None
    body: Any = field(default=None, repr=False)
    """The JSON body (out of the repr: it may hold a brain's API key)."""
    timeout: float | None = None
    """Seconds to wait for the answer when longer than the client's (desktops start slowly)."""
    content: bytes | None = field(default=None, repr=False)
    """A raw body (instead of ``body`` as JSON), sent as ``application/octet-stream``."""
    retry: bool = True
    """Whether 429/503 answers are retried (not for calls that must not run twice)."""

    def request_args(self) -> dict[str, Any]:
        if self.content is not None:
            return {
                "content": self.content,
                "headers": {"Content-Type": "application/octet-stream"},
            }
        return {"json": self.body}


@dataclass(frozen=True)
class Retry:
    """How 429 and 503 answers are retried: at most ``attempts`` more times, waiting what
    ``Retry-After`` says (else ``backoff_s`` doubling), never more than ``max_wait_s``."""

    attempts: int = 3
    backoff_s: float = 0.5
    max_wait_s: float = 30.0

    def transport_delay(self, error: httpx.TransportError, attempt: int) -> float | None:
        """Seconds to wait before sending again after ``error`` (no answer came), or None.

        A request that never left (no connection) is always sent again; one that may have
        reached the server only when it is safe to repeat (not POST).
        """
        if attempt >= self.attempts:
            return None
        if not isinstance(error, _NEVER_SENT):
            if not isinstance(error, _CUT_OFF) or _method(error) not in IDEMPOTENT:
                return None
        return float(min(self.backoff_s * 2**attempt, self.max_wait_s))

    def after(self, outcome: httpx.Response | httpx.TransportError, attempt: int) -> float | None:
        """``delay`` for an answer, ``transport_delay`` for a request that got none."""
        if isinstance(outcome, httpx.TransportError):
            return self.transport_delay(outcome, attempt)
        return self.delay(outcome, attempt)

    def delay(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before trying again, or None to give up (or not retry).

        429 (refused before any work) is always retried; 503 only for requests that are safe
        to repeat (not POST: the first try may have done its work before the answer failed).
        """
        status = response.status_code
        if status not in RETRY_STATUSES or attempt >= self.attempts:
            return None
        if status == 503 and response.request.method == "POST":
            return None
        if status == 429 and error_from(response).code == "quota_exceeded":
            return None  # a quota frees when the tenant acts, not after a wait
        wait = _retry_after(response.headers.get("Retry-After"))
        if wait is None:
            wait = self.backoff_s * 2**attempt
        return max(0.0, min(wait, self.max_wait_s))


def _method(error: httpx.TransportError) -> str | None:
    try:
        return error.request.method
    except RuntimeError:  # an error raised without its request
        return None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.timestamp() - time.time()


def finish(call: Call[T], response: httpx.Response) -> T:
    """The call's value from a final answer, or its error as an exception."""
    if response.is_success:
        return call.read(response)
    raise error_from(response)


def headers(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}", "User-Agent": "orchestrator-sdk/1"}


def _timeout(http: httpx.Client | httpx.AsyncClient, call: Call[Any]) -> httpx.Timeout:
    t = http.timeout
    if call.timeout is None or t.read is None or t.read >= call.timeout:
        return t  # the client's own: no limit, or longer than the call's
    return httpx.Timeout(call.timeout, connect=t.connect)


def unavailable(call: Call[Any], error: httpx.TransportError) -> UnavailableError:
    """The error for a call whose answer never came (after the retries)."""
    maybe = "" if isinstance(error, _NEVER_SENT) else " (it may have been carried out)"
    what = type(error).__name__
    return UnavailableError(0, "unreachable", f"{call.method} {call.path}{maybe}: {what}: {error}")


def _request(http: httpx.Client | httpx.AsyncClient, call: Call[Any]) -> dict[str, Any]:
    return {
        "method": call.method,
        "url": call.path,
        "params": call.params,
        "timeout": _timeout(http, call),
        **call.request_args(),
    }


def _settle(call: Call[T], outcome: httpx.Response | httpx.TransportError) -> T:
    """The call's value from its last outcome, or its error raised."""
    if isinstance(outcome, httpx.TransportError):
        raise unavailable(call, outcome) from outcome
    return finish(call, outcome)


def send_sync(http: httpx.Client, retry: Retry, call: Call[T]) -> T:
    attempt = 0
    while True:
        outcome: httpx.Response | httpx.TransportError
        try:
            outcome = http.request(**_request(http, call))
        except httpx.TransportError as e:
            outcome = e
        delay = retry.after(outcome, attempt) if call.retry else None
        if delay is None:
            return _settle(call, outcome)
        attempt += 1
        time.sleep(delay)


async def send_async(http: httpx.AsyncClient, retry: Retry, call: Call[T]) -> T:
    attempt = 0
    while True:
        outcome: httpx.Response | httpx.TransportError
        try:
            outcome = await http.request(**_request(http, call))
        except httpx.TransportError as e:
            outcome = e
        delay = retry.after(outcome, attempt) if call.retry else None
        if delay is None:
            return _settle(call, outcome)
        attempt += 1
        await asyncio.sleep(delay)


# ---------------------------------------------------------------------- the calls


def _model(cls: type[M]) -> Callable[[httpx.Response], M]:
    return lambda r: cls.model_validate_json(r.content)


_AGENTS = TypeAdapter(list[AgentInfo])
_TASKS = TypeAdapter(list[TaskInfo])


def _none(_: httpx.Response) -> None:
    return None


def _spec_body(spec: AgentSpec) -> dict[str, Any]:
    body = spec.model_dump(mode="json", exclude_unset=True)
    key = spec.brain.api_key
    if key is not None:  # model_dump masks secrets; the server needs the key itself
        body.setdefault("brain", {})["api_key"] = key.get_secret_value()
    return body


def agent_spec(
    spec: AgentSpec | str,
    *,
    role: str | None = None,
    brain: Any = None,
    desktop: Any = None,
    policy: Any = None,
) -> AgentSpec:
    """An ``AgentSpec`` from a spec, or from a name, with the fields given set on it."""
    fields: dict[str, Any] = (
        spec.model_dump(exclude_unset=True) if isinstance(spec, AgentSpec) else {"name": spec}
    )
    for k, v in {"role": role, "brain": brain, "desktop": desktop, "policy": policy}.items():
        if v is not None:
            fields[k] = v
    return AgentSpec.model_validate(fields)


def task_spec(
    task: TaskSpec | str,
    *,
    script: dict[str, Any] | None = None,
    step_budget: int | None = None,
    deadline_s: float | None = None,
    budget: Budget | dict[str, Any] | None = None,
) -> TaskSpec:
    """A ``TaskSpec`` from a spec, or from a description and the fields given (``budget``:
    limits for the task's whole subtree, ``orchestrator.usage.Budget``)."""
    fields: dict[str, Any] = (
        task.model_dump(exclude_unset=True) if isinstance(task, TaskSpec) else {"description": task}
    )
    given = {"script": script, "step_budget": step_budget, "deadline_s": deadline_s}
    if budget is not None:
        given["budget"] = budget if isinstance(budget, dict) else budget.model_dump()
    for k, v in given.items():
        if v is not None:
            fields[k] = v
    return TaskSpec.model_validate(fields)


def workflow_text(workflow: str | Path) -> str:
    """A workflow's YAML text, from its path (a ``Path``, an existing file, or a name ending
    in ``.yaml``/``.yml``: ``FileNotFoundError`` when missing) or the text itself."""
    if isinstance(workflow, str) and "\n" not in workflow:
        try:
            is_file = Path(workflow).is_file()
        except OSError:  # e.g. a one-line YAML text longer than a file name may be
            is_file = False
        if is_file or workflow.strip().endswith((".yaml", ".yml")):
            workflow = Path(workflow)
    if isinstance(workflow, Path):
        return workflow.read_text(encoding="utf-8")
    return workflow


class calls:  # noqa: N801 - a namespace of call builders
    """Every API call the SDK makes."""

    @staticmethod
    def create_agent(spec: AgentSpec) -> Call[AgentInfo]:
        body = _spec_body(spec)
        return Call("POST", "/v1/agents", _model(AgentInfo), body=body, timeout=SLOW_S)

    @staticmethod
    def agents() -> Call[list[AgentInfo]]:
        return Call("GET", "/v1/agents", lambda r: _AGENTS.validate_json(r.content))

    @staticmethod
    def agent(agent_id: str) -> Call[AgentInfo]:
        return Call("GET", f"/v1/agents/{agent_id}", _model(AgentInfo))

    @staticmethod
    def tree(agent_id: str) -> Call[AgentTree]:
        return Call("GET", f"/v1/agents/{agent_id}/tree", _model(AgentTree))

    @staticmethod
    def hire(agent_id: str, spec: AgentSpec) -> Call[AgentInfo]:
        path = f"/v1/agents/{agent_id}/children"
        return Call("POST", path, _model(AgentInfo), body=_spec_body(spec), timeout=SLOW_S)

    @staticmethod
    def fire(agent_id: str) -> Call[None]:
        return Call("DELETE", f"/v1/agents/{agent_id}", _none, timeout=SLOW_S)

    @staticmethod
    def assign(agent_id: str, spec: TaskSpec) -> Call[TaskInfo]:
        body = spec.model_dump(mode="json", exclude_unset=True)
        return Call("POST", f"/v1/agents/{agent_id}/tasks", _model(TaskInfo), body=body)

    @staticmethod
    def task(task_id: str) -> Call[TaskInfo]:
        return Call("GET", f"/v1/tasks/{task_id}", _model(TaskInfo))

    @staticmethod
    def cancel(task_id: str) -> Call[TaskInfo]:
        return Call("POST", f"/v1/tasks/{task_id}/cancel", _model(TaskInfo))

    @staticmethod
    def pin(task_id: str, pinned: bool) -> Call[bool]:
        method = "POST" if pinned else "DELETE"
        return Call(method, f"/v1/tasks/{task_id}/pin", lambda r: bool(r.json()["pinned"]))

    @staticmethod
    def events(task_id: str, after_seq: int, limit: int) -> Call[EventPage]:
        params = {"after_seq": after_seq, "limit": limit}
        return Call("GET", f"/v1/tasks/{task_id}/events", _model(EventPage), params=params)

    @staticmethod
    def screenshot(agent_id: str, format: Literal["png", "jpeg"], quality: int) -> Call[Screenshot]:
        return Call(
            "GET",
            f"/v1/agents/{agent_id}/screenshot",
            lambda r: Screenshot(r.content, format),
            params={"format": format, "quality": quality},
        )

    @staticmethod
    def act(agent_id: str, action: Action | dict[str, Any]) -> Call[ActionResult]:
        parsed = parse_action(action) if isinstance(action, dict) else action
        body = parsed.model_dump(mode="json")
        path = f"/v1/agents/{agent_id}/actions"
        return Call("POST", path, _model(ActionResult), body=body, timeout=ACT_S)

    @staticmethod
    def shell(
        agent_id: str, command: str, timeout_s: float, user: Literal["agent", "root"]
    ) -> Call[CommandResult]:
        body = {"command": command, "timeout_s": timeout_s, "user": user}
        path = f"/v1/agents/{agent_id}/shell"
        return Call("POST", path, _model(CommandResult), body=body, timeout=timeout_s + 30)

    @staticmethod
    def tasks(
        state: TaskState | str | None, agent_id: str | None, limit: int, offset: int = 0
    ) -> Call[list[TaskInfo]]:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if state:
            params["state"] = TaskState(state).value
        if agent_id:
            params["agent_id"] = agent_id
        return Call("GET", "/v1/tasks", lambda r: _TASKS.validate_json(r.content), params=params)

    @staticmethod
    def reset_desktop(agent_id: str) -> Call[AgentInfo]:
        path = f"/v1/agents/{agent_id}/desktop/reset"
        return Call("POST", path, _model(AgentInfo), timeout=SLOW_S)

    @staticmethod
    def live_view(agent_id: str) -> Call[str]:
        return Call("GET", f"/v1/agents/{agent_id}/live-view", lambda r: str(r.json()["url"]))

    @staticmethod
    def stats() -> Call[dict[str, dict[str, int]]]:
        return Call("GET", "/v1/stats", lambda r: dict(r.json()))

    @staticmethod
    def read_file(agent_id: str, path: str, user: Literal["agent", "root"]) -> Call[RemoteFile]:
        return Call(
            "GET",
            f"/v1/agents/{agent_id}/files",
            RemoteFile.from_response,
            params={"path": path, "user": user},
            timeout=TRANSFER_S,
        )

    @staticmethod
    def write_file(
        agent_id: str, path: str, data: bytes, user: Literal["agent", "root"]
    ) -> Call[int]:
        return Call(
            "PUT",
            f"/v1/agents/{agent_id}/files",
            lambda r: int(r.json()["size"]),
            params={"path": path, "user": user},
            content=data,
            timeout=TRANSFER_S,
        )

    @staticmethod
    def start_workflow(text: str) -> Call[tuple[AgentInfo, TaskInfo]]:
        def read(r: httpx.Response) -> tuple[AgentInfo, TaskInfo]:
            data = r.json()
            return AgentInfo.model_validate(data["agent"]), TaskInfo.model_validate(data["task"])

        # Not retried on 503: a repeated start would make a second team.
        return Call("POST", "/v1/workflows", read, body={"yaml": text}, timeout=SLOW_S)

    @staticmethod
    def health() -> Call[bool]:
        return Call("GET", "/healthz", lambda r: r.json().get("status") == "ok", retry=False)
