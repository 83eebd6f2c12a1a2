"""The runtime as the HTTP layer sees it: two typed interfaces, no Ray.

``Runtime`` is what a front (the API's routes, a test) calls: agents and tasks of a tenant,
their records, counts by state. ``AgentRef`` is one running agent: its desktop, its children,
its tasks. ``actors.Runtime`` implements both on Ray (and turns Ray's errors into ours in one
place); ``tests/fakes/runtime.py`` implements them in process on a real record store, for
route tests that start no cluster.

Every method raises the errors of ``orchestrator.errors``: ``NotFoundError`` for an unknown id
or another tenant's, ``AgentError`` when the agent cannot do it now, ``AgentGoneError`` when
its actor died, ``QuotaExceededError``, ``RecordError`` and ``UnavailableError`` when the
records or the cluster do not answer. The desktop's own refusals of a file read or write are
the ``OSError`` (``FileNotFoundError``, ``PermissionError``, ...) or ``ValueError`` it raised.

Example:
    >>> from orchestrator.domain import AgentStatus
    >>> async def busy(rt: Runtime, tenant: str) -> int:
    ...     return (await rt.stats(tenant)).agents[AgentStatus.BUSY]
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict

from . import actions as a
from .domain import (
    AgentInfo,
    AgentSpec,
    AgentTree,
    Event,
    EventKind,
    TaskInfo,
    TaskSpec,
    TaskState,
)
from .lease import Lease
from .records import ConsoleSession, StoreStats

__all__ = [
    "AgentRef",
    "Capacity",
    "NodeCapacity",
    "Runtime",
    "SessionRecords",
    "User",
    "ViewMode",
    "VncRelay",
]

User = Literal["agent", "root"]
"""Who a command or a file access on a desktop runs as."""


class NodeCapacity(BaseModel):
    """The desktops of one node of the cluster (its ``desktop`` resource)."""

    model_config = ConfigDict(extra="forbid")

    node_id: str
    """An opaque, stable label of the node (a digest of its Ray id: not the id itself)."""
    address: str
    """The node's name in the list (``node <n>``): never its network address."""
    desktops_total: int
    desktops_used: int
    desktops_free: int
    desktops_starting: int = 0
    """The caller's agents recorded ``starting`` whose actor Ray placed here (their desktop
    starts); other tenants' are not counted."""
    alive: bool


class Capacity(BaseModel):
    """The cluster's desktops, node by node (``GET /v1/capacity``)."""

    model_config = ConfigDict(extra="forbid")

    nodes: list[NodeCapacity]
    starting_unplaced: int = 0
    """The caller's agents recorded ``starting`` that no node has taken yet (waiting for a
    free unit: what an autoscaler adds a node for)."""


ViewMode = Literal["view", "control", "embed"]
"""What a live view may do: ``control`` may steer (while its holder holds the lease);
``view`` and ``embed`` only watch."""


class VncRelay(Protocol):
    """One viewer's live RFB stream of an agent's desktop, through the agent's actor, for a
    viewer whose handshake (RFB 3.8, security None: the desktop's VNC password never leaves
    the agent) the caller answered up to its ``ClientInit`` (``desktop.ViewerHandshake``);
    iterate for the bytes to the viewer, ``send`` the viewer's."""

    def __aiter__(self) -> AsyncIterator[bytes]:
        """The bytes for the viewer, as they come: the desktop's ``ServerInit`` first (the
        iteration ends with the session)."""
        ...

    async def send(self, data: bytes) -> None:
        """Bytes from the viewer (input is dropped unless the session may steer)."""
        ...

    async def close(self) -> None:
        """End the session (idempotent)."""
        ...


class AgentRef(Protocol):
    """One running agent (found with ``Runtime.agent_ref``)."""

    @property
    def info(self) -> AgentInfo:
        """The agent's record as it was when the reference was made."""
        ...

    async def tree(self) -> AgentTree:
        """This agent, its open tasks and its children's trees."""
        ...

    async def hire(self, spec: AgentSpec) -> AgentInfo:
        """Hire a child (its own desktop); returns once it is ready."""
        ...

    async def screenshot(self, format: Literal["png", "jpeg"], quality: int) -> bytes:
        """The desktop's screen, encoded."""
        ...

    async def act(self, action: a.Action, holder: str | None = None) -> a.ActionResult:
        """Carry out one action (a failed action is a result, not an error); ``holder``:
        the caller, refused (``AgentError``) while someone else holds the lease."""
        ...

    async def shell(
        self, command: str, timeout_s: float, user: User, holder: str | None = None
    ) -> a.CommandResult:
        """Run a command (a failing command is a result, not an error); refused like
        ``act`` while someone else holds the lease."""
        ...

    async def take_lease(
        self, holder: str, ttl_s: float, holder_auth: dict[str, str | None] | None = None
    ) -> Lease:
        """A person takes the desktop over (the same holder renews): the agent's running
        task pauses; ``AgentError`` while another holder's lease is in force.
        ``holder_auth``: kept with the lease (never shown) to tell later whether the
        holder's credentials still hold."""
        ...

    async def release_lease(self, lease_id: str, reason: str) -> Lease | None:
        """End the lease ``lease_id`` whoever holds it (its holder's credentials ended):
        the paused tasks resume. None when it is no longer the lease in force."""
        ...

    async def hand_back(self, holder: str, note: str | None) -> Lease:
        """The holder hands the desktop back: the task resumes with ``note`` in its history;
        ``AgentError`` when ``holder`` does not hold the lease."""
        ...

    async def lease(self) -> Lease | None:
        """The lease in force (None when nobody holds the desktop)."""
        ...

    async def live_view(self) -> str:
        """A noVNC URL to watch the desktop (it holds the VNC password)."""
        ...

    async def vnc_relay(self, mode: ViewMode, holder: str) -> VncRelay:
        """Open a live RFB stream of the desktop for a viewer whose handshake the caller
        answers meanwhile (``holder``: who, for the lease); ``AgentError`` when the agent has
        no desktop."""
        ...

    async def read_path(self, path: str, user: User) -> tuple[bool, bytes]:
        """``(is_directory, data)``: a file's bytes, or a directory as a gzipped tarball."""
        ...

    async def write_file(
        self, path: str, data: bytes, user: User, holder: str | None = None
    ) -> int:
        """Write a file on the desktop (parents created); returns its size (``AgentError``
        while someone other than ``holder`` holds the lease)."""
        ...

    async def reset_desktop(self, holder: str | None = None) -> AgentInfo:
        """Replace the desktop with a new one of the agent's spec (``AgentError`` while a
        task runs, or while someone other than ``holder`` holds the lease)."""
        ...


class SessionRecords(Protocol):
    """The records the API keeps console sign-ins and its ticket secret in (every replica
    reads the same: ``actors.RecorderRef`` on a cluster, a store in process in tests)."""

    async def add_session(self, session: ConsoleSession) -> ConsoleSession:
        """Record a new console session (idempotent by id)."""
        ...

    async def session(self, session_id: str) -> ConsoleSession | None:
        """The session with this id (its token's sha256 hex digest), or None."""
        ...

    async def end_session(self, session_id: str) -> ConsoleSession | None:
        """End the session (idempotent); it as it is then, or None when unknown."""
        ...

    async def cluster_secret(self, name: str) -> bytes:
        """The cluster's secret ``name`` (random, made on first use, the same for all)."""
        ...


class Runtime(Protocol):
    """The agent hierarchy of a cluster, as a front sees it. ``tenant``: the caller's; an
    agent or a task of another tenant is ``NotFoundError`` like an unknown id."""

    async def create_agent(self, tenant: str, spec: AgentSpec) -> AgentInfo:
        """Create a top-level agent with its desktop; returns once it is ready."""
        ...

    async def agent(self, agent_id: str, tenant: str | None = None) -> AgentInfo:
        """The agent as recorded (one whose actor is gone is recorded failed first)."""
        ...

    async def agent_ref(self, agent_id: str, tenant: str | None = None) -> AgentRef:
        """The running agent (``NotFoundError`` when it is not running)."""
        ...

    async def list_agents(self, tenant: str | None = None) -> list[AgentInfo]:
        """The tenant's agents, oldest first."""
        ...

    async def fire(self, agent_id: str, tenant: str | None = None) -> None:
        """Fire an agent, top-level or not: its subtree and their desktops go too."""
        ...

    async def assign(self, agent_id: str, spec: TaskSpec, tenant: str | None = None) -> TaskInfo:
        """Give the agent a task; returns at once with the pending task."""
        ...

    async def task(self, task_id: str, tenant: str | None = None) -> TaskInfo:
        """The task as recorded."""
        ...

    async def list_tasks(
        self,
        tenant: str,
        *,
        agent_id: str | None = None,
        state: TaskState | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[TaskInfo]:
        """The tenant's tasks, newest first."""
        ...

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
        """Events with ``seq > after_seq``, oldest first (check the task's tenant first);
        ``tenant``: only those of its agents; ``before_at``: the latest ``limit`` of them at
        or before that time; ``kinds``: only these; ``blob``: only those referring to it."""
        ...

    async def capacity(self, tenant: str | None = None) -> Capacity:
        """Desktops per node of the cluster: total, used, free, starting, alive (no node
        address or Ray id; ``tenant``: count only its starting agents)."""
        ...

    async def cancel(self, task_id: str, tenant: str | None = None) -> TaskInfo:
        """Cancel the task (and its subtasks); returns it as it is then."""
        ...

    async def pin(self, task_id: str, pinned: bool, tenant: str | None = None) -> None:
        """Pin the task's run against garbage collection, or unpin it."""
        ...

    # A person's part: each returns the task as it is then; ``AgentError`` when the task is
    # not in the state the call needs (answering a task that asked nothing, a task ended).

    async def answer(self, task_id: str, text: str, tenant: str | None = None) -> TaskInfo:
        """Answer the question the task waits on (``input_required``); it goes on with it."""
        ...

    async def approve(self, task_id: str, tenant: str | None = None) -> TaskInfo:
        """Approve the actions the task waits on (``approval_required``): they are done."""
        ...

    async def reject(self, task_id: str, reason: str, tenant: str | None = None) -> TaskInfo:
        """Refuse the actions the task waits on: the step fails with ``reason`` (the brain
        decides again knowing it)."""
        ...

    async def pause(
        self, task_id: str, tenant: str | None = None, subtree: bool = True
    ) -> TaskInfo:
        """Pause the task (and, with ``subtree``, every open subtask below it): each turns
        ``paused`` before its next step (a step in flight finishes) and takes no action until
        resumed; a task waiting on subtasks pauses before it checks them."""
        ...

    async def resume(
        self, task_id: str, tenant: str | None = None, subtree: bool = True
    ) -> TaskInfo:
        """Resume the paused task (and, with ``subtree``, its paused subtasks), or withdraw a
        pause not taken yet; ``AgentError`` when nothing of it was paused."""
        ...

    async def stats(self, tenant: str) -> StoreStats:
        """The tenant's agents by status and tasks by state, counted by the records."""
        ...

    async def blob(self, address: str) -> bytes:
        """A stored screenshot or file by its content address."""
        ...
