"""An in-process ``orchestrator.front.Runtime`` for route tests that start no Ray and no Docker.

The records are real: a ``RecordStore`` (SQLite in a temporary directory) holds every agent,
task and event, admits agents and tasks under the tenant's real quotas, and counts them for
``stats``. Agents and their children live here as objects (no actors). A task stays as the
test leaves it (``finish`` ends one): nothing runs it. Each agent's desktop is a
``MemoryDesktop``, a test double that says what it is: files in a dict, a fixed 1x1 PNG as
its screen, actions noted and answered ok, and shell commands answered from a script the
test gives (an unscripted command fails the test loudly).

The errors are the runtime's: ``NotFoundError`` for an unknown id or another tenant's,
``AgentError`` for a duplicate name or a reset while a task runs, ``QuotaExceededError`` from
the store, ``FileNotFoundError``/``IsADirectoryError`` from the desktop's files.

Example:
    >>> import asyncio, tempfile, pathlib
    >>> from orchestrator.records import SQLiteStore
    >>> from orchestrator.domain import AgentSpec
    >>> rt = LocalRuntime(SQLiteStore(pathlib.Path(tempfile.mkdtemp())))
    >>> asyncio.run(rt.create_agent("acme", AgentSpec(name="alice"))).path
    'acme/alice'
"""

from __future__ import annotations

import gzip
import io
import struct
import tarfile
import zlib
from collections.abc import Callable
from typing import Any, Literal

from orchestrator import actions as a
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
    new_id,
)
from orchestrator.errors import AgentError, NotFoundError
from orchestrator.front import Capacity, User, ViewMode, VncRelay
from orchestrator.lease import Lease, LeaseBook
from orchestrator.records import MAX_LIMIT, ConsoleSession, RecordStore, StoreStats

from .runtime_person import PersonPart

__all__ = ["PNG_1X1", "LocalAgent", "LocalRuntime", "MemoryDesktop"]


def _png_1x1() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8 bits, RGB
    pixels = zlib.compress(b"\x00\x10\x20\x30")
    body = chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


PNG_1X1 = _png_1x1()
"""What a ``MemoryDesktop``'s screen looks like (a valid PNG of one pixel)."""


class MemoryDesktop:
    """A desktop test double: files in memory, a one-pixel screen, scripted shell answers."""

    def __init__(self, shell: dict[str, a.CommandResult] | None = None) -> None:
        self.files: dict[str, bytes] = {}
        """Absolute path -> content."""
        self.actions: list[a.Action] = []
        """Every action carried out, in order."""
        self.shell_script = dict(shell or {})
        """Command -> its result; any other command fails the test."""
        self.commands: list[tuple[str, float, User]] = []

    def _abs(self, path: str) -> str:
        if "\x00" in path:
            raise ValueError("a path cannot hold NUL")
        return path if path.startswith("/") else f"/home/agent/{path}"

    async def screenshot(self, format: Literal["png", "jpeg"], quality: int) -> bytes:
        if format != "png":
            raise NotImplementedError("a MemoryDesktop's screen is PNG only")
        return PNG_1X1

    async def act(self, action: a.Action) -> a.ActionResult:
        self.actions.append(action)
        return a.ActionResult(ok=True)

    async def shell(self, command: str, timeout_s: float, user: User) -> a.CommandResult:
        self.commands.append((command, timeout_s, user))
        try:
            return self.shell_script[command]
        except KeyError:
            raise AssertionError(f"MemoryDesktop: no result scripted for {command!r}") from None

    async def read_path(self, path: str, user: User) -> tuple[bool, bytes]:
        full = self._abs(path).rstrip("/") or "/"
        if full in self.files:
            return False, self.files[full]
        inside = {p: d for p, d in self.files.items() if p.startswith(full + "/")}
        if not inside:
            raise FileNotFoundError(2, "No such file or directory", path)
        out = io.BytesIO()
        with gzip.GzipFile(fileobj=out, mode="wb") as gz, tarfile.open(fileobj=gz, mode="w") as tar:
            for p, data in sorted(inside.items()):
                member = tarfile.TarInfo(p[len(full) + 1 :])
                member.size = len(data)
                tar.addfile(member, io.BytesIO(data))
        return True, out.getvalue()

    async def write_file(self, path: str, data: bytes, user: User) -> int:
        full = self._abs(path)
        if any(p.startswith(full.rstrip("/") + "/") for p in self.files):
            raise IsADirectoryError(21, "Is a directory", path)
        self.files[full] = data
        return len(data)


class LocalAgent:
    """An agent of a ``LocalRuntime`` (``orchestrator.front.AgentRef``)."""

    def __init__(self, rt: LocalRuntime, info: AgentInfo) -> None:
        self._rt = rt
        self._info = info
        self.desktop = rt.make_desktop(info)
        self.children: dict[str, LocalAgent] = {}
        self.lease_book = LeaseBook(info.id)
        """A person's lease (the real rules; taking it pauses the running tasks)."""

    @property
    def info(self) -> AgentInfo:
        return self._info

    def _set(self, **update: object) -> None:
        self._info = self._info.model_copy(update=update)
        self._rt.store.put_agent(self._info)

    def _open_tasks(self) -> list[TaskInfo]:
        return [
            t
            for t in self._rt.store.list_tasks(agent_id=self._info.id, limit=MAX_LIMIT)
            if not t.state.done
        ]

    async def tree(self) -> AgentTree:
        kids = [await c.tree() for c in self.children.values()]
        return AgentTree(agent=self._info, tasks=self._open_tasks(), children=kids)

    async def hire(self, spec: AgentSpec) -> AgentInfo:
        if any(c.info.spec.name == spec.name for c in self.children.values()):
            raise AgentError(f"{self._info.path} already has a child named {spec.name!r}")
        info = AgentInfo(
            id=new_id("agent"),
            path=f"{self._info.path}/{spec.name}",
            tenant=self._info.tenant,
            parent_id=self._info.id,
            spec=spec,
        )
        child = self._rt._start(info)
        self.children[info.id] = child
        return child.info

    async def fire(self, child_id: str) -> None:
        child = self.children.pop(child_id, None)
        if child is None:
            raise NotFoundError(f"{self._info.path} has no child {child_id}")
        child._stop()

    def _stop(self) -> None:
        for c in list(self.children.values()):
            c._stop()
        self.children.clear()
        for t in self._open_tasks():
            self._rt._end(t, TaskState.CANCELLED, f"agent {self._info.path} was fired")
        self._set(status=AgentStatus.STOPPED)
        self._rt.agents.pop(self._info.id, None)

    async def assign(self, spec: TaskSpec) -> TaskInfo:
        task = TaskInfo(id=new_id("task"), agent_id=self._info.id, spec=spec)
        self._rt.store.admit_task(task)  # the tenant's max_running_tasks
        self._set(status=AgentStatus.BUSY)
        return task

    async def cancel_task(self, task_id: str) -> TaskInfo:
        task = self._rt.store.get_task(task_id)
        if task is None:
            raise NotFoundError(f"{self._info.path} has no task {task_id}")
        return self._rt._end(task, TaskState.CANCELLED, "cancelled")

    async def screenshot(self, format: Literal["png", "jpeg"], quality: int) -> bytes:
        return await self.desktop.screenshot(format, quality)

    def _check_input(self, holder: str | None) -> None:
        lease = self.lease_book.current()
        if lease is not None and lease.holder != holder:
            raise AgentError(f"agent {self._info.id} is taken over by {lease.holder}")

    async def act(self, action: a.Action, holder: str | None = None) -> a.ActionResult:
        self._check_input(holder)
        return await self.desktop.act(action)

    async def shell(
        self, command: str, timeout_s: float, user: User, holder: str | None = None
    ) -> a.CommandResult:
        self._check_input(holder)
        return await self.desktop.shell(command, timeout_s, user)

    async def take_lease(
        self, holder: str, ttl_s: float, holder_auth: dict[str, str | None] | None = None
    ) -> Lease:
        fresh = self.lease_book.current() is None
        lease = self.lease_book.take(holder, ttl_s, holder_auth=holder_auth)
        if fresh:  # its running tasks pause, as the agent actor's do
            running = [t for t in self._open_tasks() if t.state == TaskState.RUNNING]
            for t in running:
                self._rt.move(t.id, TaskState.PAUSED)
            lease = self.lease_book.with_task(running[0].id if running else None) or lease
        return lease

    async def release_lease(self, lease_id: str, reason: str) -> Lease | None:
        lease = self.lease_book.release(lease_id)
        if lease is not None:
            self._resume_leased(lease)
        return lease

    async def hand_back(self, holder: str, note: str | None) -> Lease:
        lease = self.lease_book.hand_back(holder, note)
        self._resume_leased(lease)
        return lease

    def _resume_leased(self, lease: Lease) -> None:
        if lease.task_id is not None:
            task = self._rt.store.get_task(lease.task_id)
            if task is not None and task.state == TaskState.PAUSED:
                self._rt.move(task.id, TaskState.RUNNING)

    async def lease(self) -> Lease | None:
        return self.lease_book.current()

    async def live_view(self) -> str:
        return f"http://127.0.0.1:6080/vnc.html?agent={self._info.id}&password=local"

    async def vnc_relay(self, mode: ViewMode, holder: str) -> VncRelay:
        """A ``MemoryDesktop`` has no VNC server: nothing to relay (a typed refusal)."""
        raise AgentError(f"{self._info.path} has an in-memory desktop: no live view to relay")

    async def read_path(self, path: str, user: User) -> tuple[bool, bytes]:
        return await self.desktop.read_path(path, user)

    async def write_file(
        self, path: str, data: bytes, user: User, holder: str | None = None
    ) -> int:
        self._check_input(holder)
        return await self.desktop.write_file(path, data, user)

    async def reset_desktop(self, holder: str | None = None) -> AgentInfo:
        self._check_input(holder)
        if self._open_tasks():
            raise AgentError(f"{self._info.path} is working on a task: cancel it first")
        self.desktop = self._rt.make_desktop(self._info)
        return self._info


class LocalRuntime(PersonPart):
    """``orchestrator.front.Runtime`` in this process, on a real record store (a person's
    part, and the helpers that put a task where a brain would: ``PersonPart``)."""

    def __init__(
        self,
        store: RecordStore,
        make_desktop: Callable[[AgentInfo], MemoryDesktop] | None = None,
    ) -> None:
        self.store = store
        self.make_desktop = make_desktop or (lambda _info: MemoryDesktop())
        self.agents: dict[str, LocalAgent] = {}
        """Every running agent (children too), by id."""
        self.calls: list[str] = []
        """The runtime's methods called, in order (tests check what a route asks for)."""
        self.given: list[tuple[str, str, Any]] = []

    def _start(self, info: AgentInfo) -> LocalAgent:
        self.store.admit_agent(info)  # QuotaExceededError before anything starts
        agent = LocalAgent(self, info)
        agent._set(status=AgentStatus.IDLE)
        self.agents[info.id] = agent
        return agent

    def _end(self, task: TaskInfo, state: TaskState, error: str | None) -> TaskInfo:
        ended = task.model_copy(update={"state": state, "error": error})
        said = Event(
            kind=EventKind.TASK,
            agent_id=task.agent_id,
            task_id=task.id,
            data={"state": state.value, "result": ended.result, "error": error},
        )
        stored = self.store.put_task(ended, said)
        agent = self.agents.get(task.agent_id)
        if agent is not None and not agent._open_tasks():
            agent._set(status=AgentStatus.IDLE)
        return stored

    def finish(self, task_id: str, result: str) -> TaskInfo:
        """End a task as succeeded with ``result`` (what a real agent's run would do)."""
        task = self.store.get_task(task_id)
        assert task is not None, task_id
        done = task.model_copy(update={"state": TaskState.SUCCEEDED, "result": result})
        said = Event(
            kind=EventKind.TASK,
            agent_id=task.agent_id,
            task_id=task.id,
            data={"state": "succeeded", "result": result, "error": None},
        )
        stored = self.store.put_task(done, said)
        agent = self.agents.get(task.agent_id)
        if agent is not None and not agent._open_tasks():
            agent._set(status=AgentStatus.IDLE)
        return stored

    # ------------------------------------------------------------------ the Runtime protocol

    async def create_agent(self, tenant: str, spec: AgentSpec) -> AgentInfo:
        self.calls.append("create_agent")
        path = f"{tenant}/{spec.name}"
        if any(a.info.path == path for a in self.agents.values()):
            raise AgentError(f"an agent named {path!r} exists already")
        info = AgentInfo(id=new_id("agent"), path=path, tenant=tenant, parent_id=None, spec=spec)
        return self._start(info).info

    async def agent(self, agent_id: str, tenant: str | None = None) -> AgentInfo:
        self.calls.append("agent")
        info = self.store.get_agent(agent_id)
        if info is None or (tenant is not None and info.tenant != tenant):
            raise NotFoundError(f"no agent {agent_id}")
        spent = self.store.agent_usage(agent_id)
        own, subtree = spent if spent is not None else (None, None)
        return info.model_copy(update={"usage": own, "subtree_usage": subtree})

    async def agent_ref(self, agent_id: str, tenant: str | None = None) -> LocalAgent:
        self.calls.append("agent_ref")
        info = await self.agent(agent_id, tenant)
        found = self.agents.get(agent_id)
        if found is None:
            raise NotFoundError(f"agent {agent_id} ({info.path}) is not running")
        return found

    async def list_agents(self, tenant: str | None = None) -> list[AgentInfo]:
        self.calls.append("list_agents")
        return self.store.list_agents(tenant)

    async def fire(self, agent_id: str, tenant: str | None = None) -> None:
        self.calls.append("fire")
        info = await self.agent(agent_id, tenant)
        agent = self.agents.get(agent_id)
        if agent is None:
            return  # ended already
        if info.parent_id is not None and info.parent_id in self.agents:
            await self.agents[info.parent_id].fire(agent_id)
        else:
            agent._stop()

    async def assign(self, agent_id: str, spec: TaskSpec, tenant: str | None = None) -> TaskInfo:
        self.calls.append("assign")
        return await (await self.agent_ref(agent_id, tenant)).assign(spec)

    async def task(self, task_id: str, tenant: str | None = None) -> TaskInfo:
        self.calls.append("task")
        task = self.store.get_task(task_id)
        if task is not None and tenant is not None:
            owner = self.store.get_agent(task.agent_id)
            task = task if owner is not None and owner.tenant == tenant else None
        if task is None:
            raise NotFoundError(f"no task {task_id}")
        return self.store.with_usage([task])[0]

    async def list_tasks(
        self,
        tenant: str,
        *,
        agent_id: str | None = None,
        state: TaskState | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[TaskInfo]:
        self.calls.append("list_tasks")
        if agent_id is not None:
            await self.agent(agent_id, tenant)
        tasks = self.store.list_tasks(agent_id, tenant, state, limit=limit, offset=offset)
        return self.store.with_usage(tasks)

    async def events(
        self,
        *,
        task_id: str | None = None,
        agent_id: str | None = None,
        after_seq: int = 0,
        limit: int = 100,
        tenant: str | None = None,
        before_at: float | None = None,
        kinds: list[EventKind] | None = None,
        blob: str | None = None,
    ) -> list[Event]:
        self.calls.append("events")
        return self.store.events(
            task_id,
            agent_id,
            after_seq,
            limit,
            kinds,
            tenant=tenant,
            before_at=before_at,
            blob=blob,
        )

    async def capacity(self, tenant: str | None = None) -> Capacity:
        """No Ray: no nodes (the agents here take no ``desktop`` unit of any node)."""
        self.calls.append("capacity")
        return Capacity(nodes=[])

    async def cancel(self, task_id: str, tenant: str | None = None) -> TaskInfo:
        self.calls.append("cancel")
        task = await self.task(task_id, tenant)
        if task.state.done:
            return task
        return self._end(task, TaskState.CANCELLED, "cancelled")

    async def pin(self, task_id: str, pinned: bool, tenant: str | None = None) -> None:
        self.calls.append("pin")
        await self.task(task_id, tenant)
        self.store.pin_task(task_id, pinned)

    async def stats(self, tenant: str) -> StoreStats:
        self.calls.append("stats")
        return self.store.stats(tenant)

    async def blob(self, address: str) -> bytes:
        self.calls.append("blob")
        return self.store.get_blob(address)

    # ``orchestrator.front.SessionRecords``: console sessions and the ticket secret, in the
    # same real store (what the recorder does on a cluster).

    async def add_session(self, session: ConsoleSession) -> ConsoleSession:
        return self.store.add_session(session)

    async def session(self, session_id: str) -> ConsoleSession | None:
        return self.store.session(session_id)

    async def end_session(self, session_id: str) -> ConsoleSession | None:
        return self.store.end_session(session_id)

    async def cluster_secret(self, name: str) -> bytes:
        return self.store.cluster_secret(name)
