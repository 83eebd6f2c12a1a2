"""The asynchronous client and its objects: ``AsyncClient``, ``AsyncAgent``, ``AsyncTask``
(the same calls as ``Client``, awaited)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
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
from ._client import POLL_MAX_S, POLL_MIN_S
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
    send_async,
    send_sync,
    task_spec,
    workflow_text,
)
from ._live import LiveViewUrl, TaskDisplay, embed_url, live_calls
from ._person import person_calls
from ._progress import Progress
from ._stream import download_async, events_async, save_remote, upload_files
from ._views import AgentView, TaskView

T = TypeVar("T")
__all__ = ["AsyncAgent", "AsyncClient", "AsyncTask"]


class AsyncClient:
    """An asynchronous client of the HTTP API (one ``httpx.AsyncClient``, reused).

    Example:
        >>> async with AsyncClient("http://127.0.0.1:8000", api_key="...") as c:  # doctest: +SKIP
        ...     agent = await c.create_agent("desk")
        ...     task = await agent.assign("hi", script={"steps": [
        ...         {"type": "shell", "command": "echo hi"}]})
        ...     print((await task.wait()).result)
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout: float = 30,
        retry: Retry | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.retry = retry or Retry()
        self._owns_http = http is None
        if http is None:
            http = httpx.AsyncClient(base_url=self.url, headers=headers(api_key), timeout=timeout)
        else:  # a client of the caller's (its transport, proxies): aimed at this API
            http.base_url = httpx.URL(self.url)
            http.headers.update(headers(api_key))
        self._http = http

    def __repr__(self) -> str:
        return f"AsyncClient({self.url!r})"

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections (a client passed as ``http`` stays the caller's to close)."""
        if self._owns_http:
            await self._http.aclose()

    async def call(self, call: Call[T]) -> T:
        """Send one ``Call`` (retrying 429/503); its value, or its error raised."""
        return await send_async(self._http, self.retry, call)

    def embed_minter(self, agent_id: str) -> Callable[[], str]:
        """A blocking call that mints an embed ticket for ``agent_id`` now and returns its
        page's URL: what a ``LiveViewUrl`` calls when Jupyter shows it (``_repr_html_`` is
        synchronous and runs on the notebook's own event loop, so it sends with a short-lived
        synchronous client of this client's URL and key)."""

        def mint() -> str:
            with httpx.Client(
                base_url=self.url, headers=dict(self._http.headers), timeout=30.0
            ) as http:
                ticket = send_sync(http, self.retry, live_calls.embed_ticket(agent_id))
            return embed_url(self.url, agent_id, ticket)

        return mint

    async def healthy(self) -> bool:
        """Whether the API answers ``/healthz`` now (needs no key; no retries)."""
        try:
            ok: bool = await self.call(calls.health())
        except ApiError:  # an error answer, or none (unreachable)
            return False
        return ok

    async def create_agent(
        self,
        name: str | AgentSpec,
        *,
        role: str | None = None,
        brain: Any = None,
        desktop: Any = None,
        policy: Any = None,
    ) -> AsyncAgent:
        """Create a top-level agent with its desktop; returns once it is ready."""
        spec = agent_spec(name, role=role, brain=brain, desktop=desktop, policy=policy)
        return AsyncAgent(self, await self.call(calls.create_agent(spec)))

    async def agents(self) -> list[AsyncAgent]:
        """This tenant's agents."""
        return [AsyncAgent(self, info) for info in await self.call(calls.agents())]

    async def agent(self, agent_id: str) -> AsyncAgent:
        """One agent by id (``NotFoundError`` when unknown)."""
        return AsyncAgent(self, await self.call(calls.agent(agent_id)))

    async def task(self, task_id: str) -> AsyncTask:
        """One task by id (``NotFoundError`` when unknown)."""
        return AsyncTask(self, await self.call(calls.task(task_id)))

    async def tasks(
        self,
        *,
        state: TaskState | str | None = None,
        agent_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AsyncTask]:
        """This tenant's tasks, newest first (``offset``/``limit`` to page; at most 1000)."""
        return [
            AsyncTask(self, t) for t in await self.call(calls.tasks(state, agent_id, limit, offset))
        ]

    async def stats(self) -> dict[str, dict[str, int]]:
        """This tenant's agents by status and tasks by state."""
        stats: dict[str, dict[str, int]] = await self.call(calls.stats())
        return stats

    async def start_workflow(self, workflow: str | Path) -> AsyncTask:
        """Start a workflow (a YAML file's path or its text); returns its task."""
        text = await asyncio.to_thread(workflow_text, workflow)
        _, task = await self.call(calls.start_workflow(text))
        return AsyncTask(self, task)


class AsyncAgent(AgentView):
    """An agent of the hierarchy (see ``Agent``; every method is awaited)."""

    def __init__(self, client: AsyncClient, info: AgentInfo) -> None:
        self.client = client
        self.info = info

    def __repr__(self) -> str:
        return f"<AsyncAgent {self.id} {self.path} {self.info.status.value}>"

    async def refresh(self) -> AsyncAgent:
        self.info = await self.client.call(calls.agent(self.id))
        return self

    async def hire(
        self,
        spec: str | AgentSpec,
        *,
        role: str | None = None,
        brain: Any = None,
        desktop: Any = None,
        policy: Any = None,
    ) -> AsyncAgent:
        """Hire a child of this agent (its own actor and desktop)."""
        child = agent_spec(spec, role=role, brain=brain, desktop=desktop, policy=policy)
        return AsyncAgent(self.client, await self.client.call(calls.hire(self.id, child)))

    async def fire(self) -> None:
        """Fire the agent: its subtree and their desktops go too."""
        await self.client.call(calls.fire(self.id))

    async def tree(self) -> AgentTree:
        tree: AgentTree = await self.client.call(calls.tree(self.id))
        return tree

    async def assign(
        self,
        task: str | TaskSpec,
        script: dict[str, Any] | None = None,
        *,
        step_budget: int | None = None,
        deadline_s: float | None = None,
        budget: Budget | dict[str, Any] | None = None,
    ) -> AsyncTask:
        """Give the agent a task (a description or a ``TaskSpec``); returns it pending."""
        spec = task_spec(
            task, script=script, step_budget=step_budget, deadline_s=deadline_s, budget=budget
        )
        return AsyncTask(self.client, await self.client.call(calls.assign(self.id, spec)))

    async def reset_desktop(self) -> AsyncAgent:
        """Replace the agent's desktop with a new one of its spec: a new container, nothing of
        the old desktop kept (for one broken from inside). ``ConflictError`` while a task of
        the agent runs: cancel it first. Returns itself."""
        self.info = await self.client.call(calls.reset_desktop(self.id))
        return self

    async def live_view(self) -> LiveViewUrl:
        """A noVNC link to watch the desktop live (see ``Agent.live_view``); shown in Jupyter
        it is the desktop itself: its embed page, with a ticket minted when it is shown (a
        blocking call from ``_repr_html_``, so a value shown later is not stale)."""
        url: str = await self.client.call(calls.live_view(self.id))
        return LiveViewUrl(url, self.id, self.client.embed_minter(self.id))

    async def embed_url(self) -> str:
        """The console's embed page of this desktop with a ticket minted now."""
        ticket = await self.client.call(live_calls.embed_ticket(self.id))
        return embed_url(self.client.url, self.id, ticket)

    async def take_over(self, ttl_s: float = DEFAULT_LEASE_TTL_S) -> Lease:
        """Take the desktop over under a lease (see ``Agent.take_over``)."""
        lease: Lease = await self.client.call(live_calls.take_over(self.id, ttl_s))
        return lease

    async def hand_back(self, note: str | None = None) -> Lease:
        """Hand the desktop back with ``note`` for the agent (see ``Agent.hand_back``)."""
        lease: Lease = await self.client.call(live_calls.hand_back(self.id, note))
        return lease

    async def lease(self) -> Lease | None:
        """The lease in force on the desktop, or None."""
        held: Lease | None = await self.client.call(live_calls.lease(self.id))
        return held

    async def screenshot(
        self, format: Literal["png", "jpeg"] = "png", quality: int = 85
    ) -> Screenshot:
        """The screen now, encoded (``bytes``; shown inline in Jupyter)."""
        shot: Screenshot = await self.client.call(calls.screenshot(self.id, format, quality))
        return shot

    async def act(self, action: Action | dict[str, Any]) -> ActionResult:
        """Carry out one action; a failed action is ``ok=False`` with its reason."""
        result: ActionResult = await self.client.call(calls.act(self.id, action))
        return result

    async def shell(
        self,
        command: str,
        *,
        timeout_s: float = 60.0,
        user: Literal["agent", "root"] = "agent",
    ) -> CommandResult:
        """Run a command on the desktop; a failing command is a result, not an error."""
        call = calls.shell(self.id, command, timeout_s, user)
        result: CommandResult = await self.client.call(call)
        return result

    async def read_file(self, path: str, *, user: Literal["agent", "root"] = "agent") -> RemoteFile:
        """A file on the desktop as bytes (a directory: a gzipped tarball, ``is_dir``)."""
        data: RemoteFile = await self.client.call(calls.read_file(self.id, path, user))
        return data

    async def write_file(
        self, path: str, data: bytes | str, *, user: Literal["agent", "root"] = "agent"
    ) -> int:
        """Write ``data`` to the file ``path`` on the desktop; returns the bytes written."""
        raw = data.encode() if isinstance(data, str) else data
        written: int = await self.client.call(calls.write_file(self.id, path, raw, user))
        return written

    async def download(
        self, remote: str, local: str | Path, *, user: Literal["agent", "root"] = "agent"
    ) -> Path:
        """Copy a file or directory from the desktop to ``local``; returns ``local``."""
        got = await self.read_file(remote, user=user)
        return await asyncio.to_thread(save_remote, got, got.is_dir, Path(local))

    async def upload(
        self, local: str | Path, remote: str, *, user: Literal["agent", "root"] = "agent"
    ) -> int:
        """Copy a local file or directory tree to ``remote`` on the desktop."""
        files = await asyncio.to_thread(lambda: list(upload_files(Path(local), remote)))
        total = 0
        for f, dest in files:
            total += await self.write_file(dest, await asyncio.to_thread(f.read_bytes), user=user)
        return total


class AsyncTask(TaskView):
    """A task given to an agent (see ``Task``; every method is awaited)."""

    def __init__(self, client: AsyncClient, info: TaskInfo) -> None:
        self.client = client
        self.info = info

    def __repr__(self) -> str:
        return f"<AsyncTask {self.id} {self.state.value}>"

    async def refresh(self) -> AsyncTask:
        self.info = await self.client.call(calls.task(self.id))
        return self

    async def cancel(self) -> AsyncTask:
        self.info = await self.client.call(calls.cancel(self.id))
        return self

    # -------------------------------------------------------------- a person in the loop

    async def answer(self, text: str) -> AsyncTask:
        """Answer the question the task waits on (see ``Task.answer``)."""
        self.info = await self.client.call(person_calls.answer(self.id, text))
        return self

    async def approve(self) -> AsyncTask:
        """Approve the actions the task waits on (see ``Task.approve``)."""
        self.info = await self.client.call(person_calls.approve(self.id))
        return self

    async def reject(self, reason: str) -> AsyncTask:
        """Refuse the actions the task waits on; the step fails with ``reason``."""
        self.info = await self.client.call(person_calls.reject(self.id, reason))
        return self

    async def pause(self, subtree: bool = True) -> AsyncTask:
        """Pause the task (and by default its open subtasks; see ``Task.pause``)."""
        self.info = await self.client.call(person_calls.pause(self.id, subtree))
        return self

    async def resume(self, subtree: bool = True) -> AsyncTask:
        """Resume the paused task (and by default its paused subtasks)."""
        self.info = await self.client.call(person_calls.resume(self.id, subtree))
        return self

    async def waiting_screenshot(self) -> Screenshot:
        """The screen the agent decided on when it asked (JPEG; see ``Task``)."""
        data = await self.client.call(person_calls.waiting_screenshot(self.id))
        return Screenshot(data, "jpeg")

    async def show(self) -> TaskDisplay:
        """The task inline: its state now and its agent's desktop live (see ``Task.show``)."""
        await self.refresh()
        agent_id = self.info.agent_id
        try:
            ticket = await self.client.call(live_calls.embed_ticket(agent_id))
        except ApiError:  # e.g. its agent is gone: the state alone
            return TaskDisplay(self.info, None)
        return TaskDisplay(self.info, embed_url(self.client.url, agent_id, ticket))

    async def pin(self, pinned: bool = True) -> AsyncTask:
        """See ``Task.pin``."""
        await self.client.call(calls.pin(self.id, pinned))
        return self

    async def events_page(self, after_seq: int = 0, limit: int = 100) -> EventPage:
        page: EventPage = await self.client.call(calls.events(self.id, after_seq, limit))
        return page

    async def events(self, after_seq: int = 0, page_size: int = 100) -> AsyncIterator[Event]:
        """Every event of the task so far, oldest first, fetched a page at a time."""
        while True:
            page = await self.events_page(after_seq, page_size)
            for event in page.events:
                yield event
            after_seq = page.next_after_seq
            if not page.has_more:
                return

    def stream(self, after_seq: int = 0) -> AsyncIterator[Event]:
        """The task's events as they are recorded (see ``Task.stream``). To stop early,
        iterate inside ``contextlib.aclosing(task.stream())``: the connection (and its slot
        on the server) is then given back at once, not when the generator is collected."""
        return events_async(self.client._http, self.client.retry, self.id, after_seq)

    async def download_artifacts(self, dest: str | Path | None = None) -> Path:
        """Save the task's artifacts zip to ``dest``; returns the path."""
        path = Path(dest) if dest is not None else Path(f"{self.id}-artifacts.zip")
        return await download_async(
            self.client._http, self.client.retry, f"/v1/tasks/{self.id}/artifacts", path
        )

    async def wait(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 - the same signature as Task.wait
        progress: bool = True,
        until_person: bool = False,
    ) -> AsyncTask:
        """Poll (with backoff) until the task is finished, or with ``until_person`` until it
        also ``needs_person``; returns itself (see ``Task.wait``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = Progress(self.id, self.info.spec.step_budget, enabled=progress)
        cursor, steps, pause = 0, 0, POLL_MIN_S
        finished: set[str] = set()
        try:
            while True:
                await self.refresh()
                subtasks = None
                if progress:
                    page = await self.events_page(cursor, 1000)
                    steps += sum(e.kind == EventKind.STEP for e in page.events)
                    cursor = page.next_after_seq
                    for sid in self.info.subtask_ids:
                        if (
                            sid not in finished
                            and (await self.client.call(calls.task(sid))).state.done
                        ):
                            finished.add(sid)
                    subtasks = (len(finished), len(self.info.subtask_ids))
                bar.update(self.state.value, steps, subtasks)
                if self.done or (until_person and self.needs_person):
                    return self
                if deadline is not None and time.monotonic() + pause > deadline:
                    raise TimeoutError(f"task {self.id} still {self.state.value} after {timeout} s")
                await asyncio.sleep(pause)
                pause = min(pause * 1.5, POLL_MAX_S)
        finally:
            bar.close()
