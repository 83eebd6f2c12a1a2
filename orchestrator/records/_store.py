"""The record store's interface: what every backend (SQLite today, a server database later)
promises to the rest of the runtime.

The contract, for every backend:

* **Durable on return.** A write (``put_*``, ``append_event``) returns only once the record
  is committed durably; "committed before the step counts as done".
* **A task's end stands.** A task's state is written with the event that announces it, in
  one transaction, and an ended task is never changed (see ``put_task``): its recorded
  state never disagrees with its last state event.
* **Blobs before references.** ``put_blob`` returns only once the bytes are durable, and
  ``append_event`` refuses an event naming a blob the store does not hold.
* **Seqs only grow.** ``append_event`` assigns a seq greater than any assigned before it
  (callers must not assume there are no gaps), and events become visible to readers in seq
  order, so a reader that pages with ``after_seq`` (live tailing) never skips one.
* **Missing is not an error for lookups.** ``get_agent``, ``get_task``, ``blob_media_type``
  and ``blob_path`` return None for an unknown id or address (a malformed address names no
  blob, so it is unknown too); ``get_blob``, which must return bytes, raises ``RecordError``.
* **One exception type.** Everything a store raises on purpose is a ``RecordError``: an
  unreadable or unwritable database, a malformed address, an argument out of range.
* **Synchronous and thread-safe.** Methods block; async callers wrap them in
  ``asyncio.to_thread``. One store object may be shared by the threads of one process.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Self

from pydantic import BaseModel, ConfigDict

from ..domain import AgentInfo, AgentStatus, Event, EventKind, TaskInfo, TaskState
from ..tenants import ApiKey, Quotas
from ..usage import Prices, Usage
from ._gc import GcReport
from ._sessions import ConsoleSession

__all__ = ["MAX_LIMIT", "RecordStore", "StoreStats"]

MAX_LIMIT = 10_000
"""The most rows one list or page call returns."""


class StoreStats(BaseModel):
    """How many agents are in each status and tasks in each state, counted by the store
    (every status and state is present, 0 when none is).

    Example:
        >>> s = StoreStats(agents=dict.fromkeys(AgentStatus, 0), tasks=dict.fromkeys(TaskState, 0))
        >>> s.tasks[TaskState.RUNNING]
        0
    """

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    agents: dict[AgentStatus, int]
    """Agents by status."""
    tasks: dict[TaskState, int]
    """Tasks by state (a task's tenant is its agent's)."""


class RecordStore(abc.ABC):
    """Durable records of agents, tasks, timeline events and content-addressed blobs.

    Example:
        >>> from orchestrator.records import open_store
        >>> from orchestrator.domain import Event, EventKind
        >>> import tempfile, pathlib
        >>> with open_store(pathlib.Path(tempfile.mkdtemp())) as store:
        ...     shot = store.put_blob(b"...jpeg bytes...", "image/jpeg")
        ...     ev = store.append_event(Event(kind=EventKind.STEP, blobs=[shot]))
        ...     [e.seq for e in store.events(after_seq=0)] == [ev.seq]
        True
    """

    # ------------------------------------------------------------------ agents

    @abc.abstractmethod
    def put_agent(self, info: AgentInfo) -> None:
        """Insert the agent, or replace the stored one with the same id.

        The brain's API key is never stored: a read-back agent has ``api_key=None``.
        """

    @abc.abstractmethod
    def get_agent(self, agent_id: str) -> AgentInfo | None:
        """The agent with this id, or None."""

    @abc.abstractmethod
    def list_agents(
        self,
        tenant: str | None = None,
        parent_id: str | None = None,
        *,
        top_level: bool = False,
        status: AgentStatus | Iterable[AgentStatus] | None = None,
        limit: int = MAX_LIMIT,
        offset: int = 0,
    ) -> list[AgentInfo]:
        """Agents, oldest first, filtered by every argument given.

        Args:
            tenant: only this tenant's agents.
            parent_id: only the agents this agent hired.
            top_level: only agents nobody hired (``parent_id is None``).
            status: only agents in this status (or any of these).
            limit: at most this many (1 to ``MAX_LIMIT``).
            offset: skip this many first (for paging).
        """

    # ------------------------------------------------------------------ tasks

    @abc.abstractmethod
    def put_task(self, info: TaskInfo, event: Event | None = None) -> TaskInfo:
        """Insert the task, or replace the stored one with the same id; returns the task as
        stored now.

        A task's state and the event that announces it are one record: ``event`` (a ``task``
        event of this task whose ``data["state"]`` is ``info.state``, else ``RecordError``)
        is appended in the same transaction, so the stored state is always the state of the
        task's last state event. A stored task that has ended (``state.done``) is never
        changed: the write, and its event, are dropped and the stored task is returned (a
        late or retried write cannot reopen it). Changing a stored task's state without an
        event is refused (``RecordError``); without one, only the rest may change (its
        subtasks, say).
        """

    @abc.abstractmethod
    def get_task(self, task_id: str) -> TaskInfo | None:
        """The task with this id, or None."""

    @abc.abstractmethod
    def list_tasks(
        self,
        agent_id: str | None = None,
        tenant: str | None = None,
        state: TaskState | Iterable[TaskState] | None = None,
        *,
        parent_task_id: str | None = None,
        agent_status: AgentStatus | Iterable[AgentStatus] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[TaskInfo]:
        """Tasks, newest first, filtered by every argument given.

        A task's tenant and agent status are its agent's: with ``tenant`` or
        ``agent_status`` set, a task whose agent is not stored is not listed.

        Args:
            agent_id: only tasks given to this agent.
            tenant: only tasks of this tenant's agents.
            state: only tasks in this state (or any of these).
            parent_task_id: only the subtasks of this task.
            agent_status: only tasks whose agent is in this status (or any of these).
            limit: at most this many (1 to ``MAX_LIMIT``).
            offset: skip this many first (for paging).
        """

    # ------------------------------------------------------------------ usage

    @abc.abstractmethod
    def task_usage(
        self, task_ids: Iterable[str], prices: Prices | None = None
    ) -> dict[str, tuple[Usage, Usage]]:
        """``{task id: (its own usage, its subtree's)}`` for each stored task of ``task_ids``
        (unknown ids are left out), summed from the events (``orchestrator.records._usage``):
        what the records hold is what was spent. ``prices``: default the configured ones."""

    @abc.abstractmethod
    def agent_usage(
        self, agent_id: str, prices: Prices | None = None
    ) -> tuple[Usage, Usage] | None:
        """``(what the agent's tasks spent, what those of its subtree of agents spent)``, or
        None for an unknown agent."""

    def with_usage(self, tasks: list[TaskInfo], prices: Prices | None = None) -> list[TaskInfo]:
        """``tasks`` with their ``usage`` and ``subtree_usage`` filled in."""
        spent = self.task_usage([t.id for t in tasks], prices)
        return [
            t.model_copy(update={"usage": spent[t.id][0], "subtree_usage": spent[t.id][1]})
            if t.id in spent
            else t
            for t in tasks
        ]

    # ------------------------------------------------------------------ counts

    @abc.abstractmethod
    def agent_counts(self, tenant: str | None = None) -> dict[AgentStatus, int]:
        """How many agents (of ``tenant``, or of all) are in each status: every status is a
        key, 0 when no agent is in it. Counted by the store, with no page limit."""

    @abc.abstractmethod
    def task_counts(self, tenant: str | None = None) -> dict[TaskState, int]:
        """How many tasks (of ``tenant``'s agents, or of all) are in each state: every state
        is a key, 0 when no task is in it. Counted by the store, with no page limit; with
        ``tenant`` set, as in ``list_tasks``, a task whose agent is not stored is not
        counted."""

    def stats(self, tenant: str | None = None) -> StoreStats:
        """``agent_counts`` and ``task_counts`` together."""
        return StoreStats(agents=self.agent_counts(tenant), tasks=self.task_counts(tenant))

    # ------------------------------------------------------------------ events

    @abc.abstractmethod
    def append_event(self, event: Event) -> Event:
        """Store the event and return it with its assigned ``seq``.

        Raises ``RecordError`` when the event already carries a seq (it was stored before),
        names a blob the store does not hold, or is a ``task`` event announcing a state
        (``data["state"]``) of a stored task: that is written with the state, ``put_task``.
        """

    @abc.abstractmethod
    def events(
        self,
        task_id: str | None = None,
        agent_id: str | None = None,
        after_seq: int = 0,
        limit: int = 100,
        kinds: Iterable[EventKind] | None = None,
        tenant: str | None = None,
        before_at: float | None = None,
        blob: str | None = None,
    ) -> list[Event]:
        """Events with ``seq > after_seq``, in seq order, filtered by every argument given.

        To page or tail, pass the last seq seen as ``after_seq``. ``tenant``: only events of
        that tenant's agents. ``before_at``: only events at or before that time, and of
        those the latest ``limit`` (still in seq order): the moment a replay shows.
        ``blob``: only events that refer to the blob at that address.
        """

    # ------------------------------------------------------------------ blobs

    @abc.abstractmethod
    def put_blob(self, data: bytes, media_type: str) -> str:
        """Store bytes durably; returns their address, the sha256 hex digest of ``data``.

        Idempotent: storing the same bytes again returns the same address (and keeps the
        first media type).
        """

    @abc.abstractmethod
    def get_blob(self, address: str) -> bytes:
        """The bytes at this address; ``RecordError`` if malformed, unknown or corrupt."""

    @abc.abstractmethod
    def blob_media_type(self, address: str) -> str | None:
        """The media type the blob was first stored with, or None (unknown address)."""

    @abc.abstractmethod
    def blob_path(self, address: str) -> Path | None:
        """A local file holding the blob (to stream it), or None (unknown, or not local).

        The file must only be read: it is shared by every record naming these bytes.
        """

    # ------------------------------------------------------------------ retention

    @abc.abstractmethod
    def pin_task(self, task_id: str, pinned: bool = True) -> bool:
        """Pin (or unpin) a task: garbage collection keeps every run a pinned task is part
        of. False if there is no such task."""

    @abc.abstractmethod
    def is_pinned(self, task_id: str) -> bool:
        """Whether this task is pinned."""

    @abc.abstractmethod
    def collect_garbage(
        self,
        older_than_s: float,
        *,
        dry_run: bool = False,
        vacuum: bool = False,
        now: float | None = None,
    ) -> GcReport:
        """Remove runs, agents, events and blobs that ended more than ``older_than_s``
        seconds before ``now`` (see ``orchestrator.records._gc`` for exactly what), never
        anything of a live agent, an open task or a pinned run. ``dry_run``: remove
        nothing, report what would go. ``vacuum``: also shrink the database file."""

    # ------------------------------------------------------------------ tenants

    @abc.abstractmethod
    def admit_agent(self, info: AgentInfo) -> None:
        """``put_agent``, once the tenant's quotas allow one more live agent like ``info``
        (checked and stored atomically: two concurrent admissions cannot both take the last
        slot); ``QuotaExceededError`` (the limit and the count) otherwise."""

    @abc.abstractmethod
    def admit_task(self, info: TaskInfo) -> None:
        """``put_task``, once the tenant's ``max_running_tasks`` allows one more (subtasks of
        delegation are not counted); ``QuotaExceededError`` otherwise. Atomic as above."""

    @abc.abstractmethod
    def quotas(self, tenant: str) -> Quotas:
        """The tenant's quotas (all unlimited when none were set)."""

    @abc.abstractmethod
    def set_quotas(self, tenant: str, update: Quotas) -> Quotas:
        """Replace the quotas ``update`` sets explicitly (None: unlimited); returns them all."""

    @abc.abstractmethod
    def add_api_key(self, key: ApiKey, digest: str) -> ApiKey:
        """Store an API key's record with its sha256 hex ``digest`` (never the key itself);
        idempotent by ``key.id``; ``RecordError`` when the digest is stored already."""

    @abc.abstractmethod
    def api_keys(self, tenant: str | None = None, *, include_revoked: bool = True) -> list[ApiKey]:
        """API keys' records, oldest first (no digests)."""

    @abc.abstractmethod
    def revoke_api_key(self, key_id: str) -> ApiKey | None:
        """Revoke the key (idempotent); its record, or None when there is no such key."""

    @abc.abstractmethod
    def active_api_keys(self) -> list[tuple[str, str]]:
        """``(tenant, sha256 hex digest)`` of every key not revoked: what the API checks."""

    # ------------------------------------------------------------------ console sessions

    @abc.abstractmethod
    def add_session(self, session: ConsoleSession) -> ConsoleSession:
        """Store a new console session (idempotent by id: the stored one on a retry)."""

    @abc.abstractmethod
    def session(self, session_id: str) -> ConsoleSession | None:
        """The console session with this id (its token's sha256 hex digest), or None."""

    @abc.abstractmethod
    def end_session(self, session_id: str) -> ConsoleSession | None:
        """End the session (idempotent); it as it is then, or None when there is none."""

    @abc.abstractmethod
    def cluster_secret(self, name: str) -> bytes:
        """The cluster's secret ``name`` (random bytes, made on first use; every process
        that asks gets the same)."""

    # ------------------------------------------------------------------ lifetime

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections and files; any later call raises ``RecordError``."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
