"""The synchronous client and its objects: ``Client``, ``Agent``, ``Task``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

import httpx

from ..actions import Action, ActionResult, CommandResult
from ..domain import (
    AgentInfo,
    AgentSpec,
    AgentTree,
    Event,
    EventKind,
    TaskInfo,
    TaskSpec,
    TaskState,
)
from ..lease import DEFAULT_LEASE_TTL_S, Lease
from ..usage import Budget
from ._errors import ApiError
from ._http import (
    Call,
    EventPage,
    RemoteFile,
    Retry,
    Screenshot,
    agent_spec,
    calls,
    headers,
    send_sync,
    task_spec,
    workflow_text,
)
from ._live import LiveViewUrl, TaskDisplay, embed_url, live_calls
from ._person import person_calls
from ._progress import Progress
from ._stream import download_sync, events_sync, save_remote, upload_files
from ._views import AgentView, TaskView

T = TypeVar("T")
__all__ = ["Agent", "Client", "Task"]

POLL_MIN_S = 0.2
POLL_MAX_S = 2.0


class Client:
    """A synchronous client of the HTTP API (one ``httpx.Client``, reused).

    Example:
        >>> from orchestrator.sdk import Client                         # doctest: +SKIP
        >>> with Client("http://127.0.0.1:8000", api_key="...") as c:  # doctest: +SKIP
        ...     agent = c.create_agent("desk", role="tester")
        ...     print(agent.shell("uname -a").stdout)
        ...     agent.fire()
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout: float = 30,
        retry: Retry | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.retry = retry or Retry()
        self._owns_http = http is None
        if http is None:
            http = httpx.Client(base_url=self.url, headers=headers(api_key), timeout=timeout)
        else:  # a client of the caller's (its transport, proxies): aimed at this API
            http.base_url = httpx.URL(self.url)
            http.headers.update(headers(api_key))
        self._http = http

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections (a client passed as ``http`` stays the caller's to close)."""
        if self._owns_http:
            self._http.close()

    def call(self, call: Call[T]) -> T:
        """Send one ``Call`` (retrying 429/503); its value, or its error raised."""
        return send_sync(self._http, self.retry, call)

    # ------------------------------------------------------------------ agents and tasks

    def healthy(self) -> bool:
        """Whether the API answers ``/healthz`` now (needs no key; no retries)."""
        try:
            ok: bool = self.call(calls.health())
        except ApiError:  # an error answer, or none (unreachable)
            return False
        return ok

    def create_agent(
        self,
        name: str | AgentSpec,
        *,
        role: str | None = None,
        brain: Any = None,
        desktop: Any = None,
        policy: Any = None,
    ) -> Agent:
        """Create a top-level agent with its desktop; returns once it is ready.

        ``brain``, ``desktop`` and ``policy`` are a ``BrainConfig`` / ``DesktopSpec`` /
        ``ApprovalPolicy`` (``orchestrator.policy``) or their dicts.
        """
        spec = agent_spec(name, role=role, brain=brain, desktop=desktop, policy=policy)
        return Agent(self, self.call(calls.create_agent(spec)))

    def agents(self) -> list[Agent]:
        """This tenant's agents."""
        return [Agent(self, info) for info in self.call(calls.agents())]

    def agent(self, agent_id: str) -> Agent:
        """One agent by id (``NotFoundError`` when unknown)."""
        return Agent(self, self.call(calls.agent(agent_id)))

    def task(self, task_id: str) -> Task:
        """One task by id (``NotFoundError`` when unknown)."""
        return Task(self, self.call(calls.task(task_id)))

    def tasks(
        self,
        *,
        state: TaskState | str | None = None,
        agent_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Task]:
        """This tenant's tasks, newest first (``offset``/``limit`` to page; at most 1000)."""
        return [Task(self, t) for t in self.call(calls.tasks(state, agent_id, limit, offset))]

    def stats(self) -> dict[str, dict[str, int]]:
        """This tenant's agents by status and tasks by state."""
        stats: dict[str, dict[str, int]] = self.call(calls.stats())
        return stats

    def start_workflow(self, workflow: str | Path) -> Task:
        """Start a workflow (a YAML file's path or its text): its top-level agent is created
        in your tenant and given the task; returns the task (``wait()`` for it)."""
        _, task = self.call(calls.start_workflow(workflow_text(workflow)))
        return Task(self, task)


class Agent(AgentView):
    """An agent of the hierarchy: hire, fire, give it tasks, use its desktop."""

    def __init__(self, client: Client, info: AgentInfo) -> None:
        self.client = client
        self.info = info

    def __repr__(self) -> str:
        return f"<Agent {self.id} {self.path} {self.info.status.value}>"

    def refresh(self) -> Agent:
        """Read the agent again (its status); returns itself."""
        self.info = self.client.call(calls.agent(self.id))
        return self

    def hire(
        self,
        spec: str | AgentSpec,
        *,
        role: str | None = None,
        brain: Any = None,
        desktop: Any = None,
        policy: Any = None,
    ) -> Agent:
        """Hire a child of this agent (its own actor and desktop)."""
        child = agent_spec(spec, role=role, brain=brain, desktop=desktop, policy=policy)
        return Agent(self.client, self.client.call(calls.hire(self.id, child)))

    def fire(self) -> None:
        """Fire the agent: its subtree and their desktops go too."""
        self.client.call(calls.fire(self.id))

    def tree(self) -> AgentTree:
        """The agent, its unfinished tasks and its children, recursively."""
        tree: AgentTree = self.client.call(calls.tree(self.id))
        return tree

    def assign(
        self,
        task: str | TaskSpec,
        script: dict[str, Any] | None = None,
        *,
        step_budget: int | None = None,
        deadline_s: float | None = None,
        budget: Budget | dict[str, Any] | None = None,
    ) -> Task:
        """Give the agent a task (a description or a ``TaskSpec``); returns it pending.

        Example:
            >>> t = agent.assign("say hi", script={"steps": [  # doctest: +SKIP
            ...     {"type": "shell", "command": "echo hi"}]})
            >>> t.wait().result                                  # doctest: +SKIP
            'hi'
        """
        spec = task_spec(
            task, script=script, step_budget=step_budget, deadline_s=deadline_s, budget=budget
        )
        return Task(self.client, self.client.call(calls.assign(self.id, spec)))

    def reset_desktop(self) -> Agent:
        """Replace the agent's desktop with a new one of its spec: a new container, nothing of
        the old desktop kept (for one broken from inside). ``ConflictError`` while a task of
        the agent runs: cancel it first. Returns itself."""
        self.info = self.client.call(calls.reset_desktop(self.id))
        return self

    def live_view(self) -> LiveViewUrl:
        """A noVNC link (on the API's machine, 127.0.0.1) to watch the desktop live; it holds
        the desktop's VNC password: share it as you would the password. Shown in Jupyter, it
        is the desktop itself: the console's embed page with a fresh view-only ticket."""
        url: str = self.client.call(calls.live_view(self.id))
        return LiveViewUrl(url, self.id, self.embed_url)

    def embed_url(self) -> str:
        """The console's embed page of this desktop (live, view-only) with a ticket minted
        now with the client's key (it opens within 15 min; works from any site)."""
        ticket = self.client.call(live_calls.embed_ticket(self.id))
        return embed_url(self.client.url, self.id, ticket)

    def take_over(self, ttl_s: float = DEFAULT_LEASE_TTL_S) -> Lease:
        """Take the desktop over under a lease (``ttl_s``: until it hands back by itself;
        taking it again renews it): the agent's running task pauses, and only your input
        (your key's) reaches the desktop. ``ConflictError`` while someone else holds it."""
        lease: Lease = self.client.call(live_calls.take_over(self.id, ttl_s))
        return lease

    def hand_back(self, note: str | None = None) -> Lease:
        """Hand the desktop back: the paused task resumes, with ``note`` (what you did) in
        the agent's history. ``ConflictError`` when you do not hold the lease."""
        lease: Lease = self.client.call(live_calls.hand_back(self.id, note))
        return lease

    def lease(self) -> Lease | None:
        """The lease in force on the desktop (who holds it, until when), or None."""
        held: Lease | None = self.client.call(live_calls.lease(self.id))
        return held

    def screenshot(self, format: Literal["png", "jpeg"] = "png", quality: int = 85) -> Screenshot:
        """The screen now, encoded (``bytes``; shown inline in Jupyter)."""
        shot: Screenshot = self.client.call(calls.screenshot(self.id, format, quality))
        return shot

    def act(self, action: Action | dict[str, Any]) -> ActionResult:
        """Carry out one action; a failed action is ``ok=False`` with its reason."""
        result: ActionResult = self.client.call(calls.act(self.id, action))
        return result

    def shell(
        self,
        command: str,
        *,
        timeout_s: float = 60.0,
        user: Literal["agent", "root"] = "agent",
    ) -> CommandResult:
        """Run a command on the desktop; a failing command is a result, not an error."""
        result: CommandResult = self.client.call(calls.shell(self.id, command, timeout_s, user))
        return result

    def read_file(self, path: str, *, user: Literal["agent", "root"] = "agent") -> RemoteFile:
        """A file on the desktop as bytes (a directory: a gzipped tarball, ``is_dir``)."""
        data: RemoteFile = self.client.call(calls.read_file(self.id, path, user))
        return data

    def write_file(
        self, path: str, data: bytes | str, *, user: Literal["agent", "root"] = "agent"
    ) -> int:
        """Write ``data`` (text as UTF-8) to the file ``path`` on the desktop (parents made,
        an existing file replaced); returns the bytes written."""
        raw = data.encode() if isinstance(data, str) else data
        written: int = self.client.call(calls.write_file(self.id, path, raw, user))
        return written

    def download(
        self, remote: str, local: str | Path, *, user: Literal["agent", "root"] = "agent"
    ) -> Path:
        """Copy a file or directory from the desktop to ``local``; returns ``local``."""
        got = self.read_file(remote, user=user)
        return save_remote(got, got.is_dir, Path(local))

    def upload(
        self, local: str | Path, remote: str, *, user: Literal["agent", "root"] = "agent"
    ) -> int:
        """Copy a local file or directory tree to ``remote`` on the desktop; returns the
        bytes written."""
        return sum(
            self.write_file(dest, f.read_bytes(), user=user)
            for f, dest in upload_files(Path(local), remote)
        )


class Task(TaskView):
    """A task given to an agent; ``wait()`` for it, read its ``events()``."""

    def __init__(self, client: Client, info: TaskInfo) -> None:
        self.client = client
        self.info = info

    def __repr__(self) -> str:
        return f"<Task {self.id} {self.state.value}>"

    def refresh(self) -> Task:
        """Read the task again; returns itself."""
        self.info = self.client.call(calls.task(self.id))
        return self

    def cancel(self) -> Task:
        """Cancel the task (a finished task stays as it was); returns itself."""
        self.info = self.client.call(calls.cancel(self.id))
        return self

    # -------------------------------------------------------------- a person in the loop

    def answer(self, text: str) -> Task:
        """Answer the question the task waits on (``needs_person``, ``waiting.question``):
        it goes on with the answer. ``ConflictError`` when it asks nothing. Returns itself."""
        self.info = self.client.call(person_calls.answer(self.id, text))
        return self

    def approve(self) -> Task:
        """Approve the actions the task waits on (``waiting.actions``): they are carried
        out. ``ConflictError`` when it awaits no approval. Returns itself."""
        self.info = self.client.call(person_calls.approve(self.id))
        return self

    def reject(self, reason: str) -> Task:
        """Refuse the actions the task waits on: the step fails with ``reason`` and the
        agent decides again knowing it. Returns itself."""
        self.info = self.client.call(person_calls.reject(self.id, reason))
        return self

    def pause(self, subtree: bool = True) -> Task:
        """Pause the task (and by default its open subtasks): each takes no action from
        its next step until ``resume``. Returns itself."""
        self.info = self.client.call(person_calls.pause(self.id, subtree))
        return self

    def resume(self, subtree: bool = True) -> Task:
        """Resume the paused task (and by default its paused subtasks). Returns itself."""
        self.info = self.client.call(person_calls.resume(self.id, subtree))
        return self

    def waiting_screenshot(self) -> Screenshot:
        """The screen the agent decided on when it asked or asked for approval (JPEG)."""
        return Screenshot(self.client.call(person_calls.waiting_screenshot(self.id)), "jpeg")

    def show(self) -> TaskDisplay:
        """The task inline (the last expression of a Jupyter cell, or ``display(...)``): its
        state now, and its agent's desktop live (view-only, a fresh embed ticket)."""
        self.refresh()
        agent_id = self.info.agent_id
        try:
            ticket = self.client.call(live_calls.embed_ticket(agent_id))
        except ApiError:  # e.g. its agent is gone: the state alone
            return TaskDisplay(self.info, None)
        return TaskDisplay(self.info, embed_url(self.client.url, agent_id, ticket))

    def pin(self, pinned: bool = True) -> Task:
        """Keep this task's run (with its subtasks, events, screenshots and files) from
        garbage collection whatever its age; ``pin(False)`` lets it go again. Returns itself."""
        self.client.call(calls.pin(self.id, pinned))
        return self

    def events_page(self, after_seq: int = 0, limit: int = 100) -> EventPage:
        """One page of events with ``seq > after_seq``, oldest first."""
        page: EventPage = self.client.call(calls.events(self.id, after_seq, limit))
        return page

    def events(self, after_seq: int = 0, page_size: int = 100) -> Iterator[Event]:
        """Every event of the task so far, oldest first, fetched a page at a time."""
        while True:
            page = self.events_page(after_seq, page_size)
            yield from page.events
            after_seq = page.next_after_seq
            if not page.has_more:
                return

    def stream(self, after_seq: int = 0) -> Iterator[Event]:
        """The task's events as they are recorded (Server-Sent Events), from ``after_seq``
        until the task is finished; a dropped connection is resumed where it stopped."""
        return events_sync(self.client._http, self.client.retry, self.id, after_seq)

    def download_artifacts(self, dest: str | Path | None = None) -> Path:
        """Save the task's artifacts (a zip: result, subtasks, events, screenshots, kept
        files) to ``dest`` (default ``<task id>-artifacts.zip``); returns the path."""
        path = Path(dest) if dest is not None else Path(f"{self.id}-artifacts.zip")
        return download_sync(
            self.client._http, self.client.retry, f"/v1/tasks/{self.id}/artifacts", path
        )

    def wait(
        self, timeout: float | None = None, progress: bool = True, until_person: bool = False
    ) -> Task:
        """Poll (with backoff) until the task is finished; returns itself.

        Shows a progress bar (``tqdm.auto``; a status line on stderr without tqdm) of its
        steps, or of its subtasks done once it delegated; raises ``TimeoutError`` after
        ``timeout`` seconds. A failed task is returned, not raised: look at ``state`` and
        ``error``. A task that waits for a person is still open: ``wait()`` goes on waiting
        (until someone answers, or the wait's own timeout fails the task); with
        ``until_person`` it returns as soon as the task ``needs_person`` too::

            while not task.wait(until_person=True).done:
                task.answer(input(task.waiting.question))
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = Progress(self.id, self.info.spec.step_budget, enabled=progress)
        cursor, steps, pause = 0, 0, POLL_MIN_S
        finished: set[str] = set()
        try:
            while True:
                self.refresh()
                subtasks = None
                if progress:
                    page = self.events_page(cursor, 1000)
                    steps += sum(e.kind == EventKind.STEP for e in page.events)
                    cursor = page.next_after_seq
                    for sid in self.info.subtask_ids:
                        if sid not in finished and (self.client.call(calls.task(sid))).state.done:
                            finished.add(sid)
                    subtasks = (len(finished), len(self.info.subtask_ids))
                bar.update(self.state.value, steps, subtasks)
                if self.done or (until_person and self.needs_person):
                    return self
                if deadline is not None and time.monotonic() + pause > deadline:
                    raise TimeoutError(f"task {self.id} still {self.state.value} after {timeout} s")
                time.sleep(pause)
                pause = min(pause * 1.5, POLL_MAX_S)
        finally:
            bar.close()
