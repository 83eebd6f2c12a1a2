"""The cluster's recorder as a process outside it sees it: typed methods, one handle kept.

``RecorderRef`` looks the recorder up by name once per process (off the event loop) and
keeps the handle; a call that meets a dead actor looks the name up again and, when another
actor holds it now (a replaced recorder), is made once more on that one (the methods reached
this way are reads and upserts). On the recorder's node it reads agents and tasks by id
straight from the records' SQLite file. Ray's errors come out as ours (``ray_call``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import RayActorError, RayError

from orchestrator.domain import AgentInfo, AgentStatus, Event, EventKind, TaskInfo, TaskState
from orchestrator.errors import RecordError
from orchestrator.records import MAX_LIMIT, ConsoleSession, SQLiteStore, StoreStats
from orchestrator.tenants import ApiKey, Quotas
from orchestrator.usage import Usage

from ._agent_ref import ours, ray_call
from ._names import NAMESPACE, RECORDER_NAME
from ._recorder import task_of

__all__ = ["LOCAL_CHECK_S", "LOCAL_READS", "LOCAL_THREAD_READS", "RecorderRef"]

log = logging.getLogger(__name__)

LOCAL_READS = frozenset(
    {
        "get_agent",
        "get_task",
        "get_task_of",
        "active_api_keys",
        "session",
        "with_usage",
        "agent_usage",
    }
)
"""Recorder reads a process on the recorder's node makes from the records' file itself."""
LOCAL_THREAD_READS = frozenset({"with_usage", "agent_usage"})
"""Local reads that sum many events (usage rollups): made in a worker thread, so that a big
subtree does not stall the replica's event loop."""
LOCAL_CHECK_S = 2.0
"""How often a process reading the records locally checks that the recorder is the same."""


class RecorderRef:
    """The cluster's recorder, looked up by name once and kept, found again when replaced.

    Example:
        >>> ref = RecorderRef(local_reads=True)                      # doctest: +SKIP
        >>> task = await ref.get_task_of("task-...", "acme")           # doctest: +SKIP
    """

    def __init__(
        self,
        name: str = RECORDER_NAME,
        namespace: str = NAMESPACE,
        *,
        local_reads: bool = False,
        handle: Any = None,
    ) -> None:
        self.name = name
        self.namespace = namespace
        self.local_reads = local_reads
        """Read agents and tasks by id straight from the records' SQLite file when this
        process runs on the recorder's node (one indexed read instead of an actor call)."""
        self._handle: Any = handle
        self._session: tuple[str, str] | None = _session() if handle is not None else None
        self._local: SQLiteStore | None = None
        self._local_of: str | None = None
        """The recorder actor the local store belongs to (its id)."""
        self._checked_at = 0.0

    # ------------------------------------------------------------------ the handle

    def handle(self, *, refresh: bool = False) -> Any:
        """The recorder's actor handle (``RecordError`` when no recorder is running). Blocks
        on the control plane when it must look the name up: from a coroutine, use
        ``lookup``."""
        session = _session()
        if refresh or self._handle is None or session != self._session:
            self._handle = None
            try:
                self._handle = ray.get_actor(self.name, namespace=self.namespace)
            except ValueError:
                raise RecordError("the recorder is not running on this cluster") from None
            self._session = session
        return self._handle

    async def lookup(self, *, refresh: bool = False) -> Any:
        """``handle``, with a lookup of the name (a control-plane call) in a worker thread:
        a slow control plane stalls this call only, not the event loop."""
        if not refresh and self._handle is not None and _session() == self._session:
            return self._handle
        return await asyncio.to_thread(self.handle, refresh=refresh)

    async def _local_store(self) -> SQLiteStore | None:
        """The records' file opened read-only, when it is on this node (else None).

        The recorder is pinned to its node and restarts there on the same directory; the
        name is looked up again every ``LOCAL_CHECK_S`` so that a recorder replaced by one
        elsewhere is noticed, and the local file is then dropped."""
        now = time.monotonic()
        stale = now - self._checked_at > LOCAL_CHECK_S
        handle = await self.lookup(refresh=stale)
        if stale:
            self._checked_at = now
        actor = handle._actor_id.hex()
        if actor != self._local_of:
            if self._local is not None:
                self._local.close()
            self._local, self._local_of = None, actor
            try:
                where = await handle.location.remote()
                here = ray.get_runtime_context().get_node_id()
                if where.get("node_id") == here and where.get("data_dir"):
                    self._local = SQLiteStore(Path(where["data_dir"]), readonly=True)
            except (RayActorError, RecordError) as e:
                log.info("reading the records through the recorder: %s", e)
        return self._local

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """``method`` of the recorder, on the actor that holds the name now."""
        if self.local_reads and method in LOCAL_READS:
            store = await self._local_store()
            if store is not None:
                try:
                    if method == "get_task_of":
                        return task_of(store, *args, **kwargs)
                    read = getattr(store, method)
                    if method in LOCAL_THREAD_READS:
                        return await asyncio.to_thread(read, *args, **kwargs)
                    return read(*args, **kwargs)
                except RecordError as e:  # the file went away: ask the recorder
                    log.warning("local read of the records failed: %s", e)
                    self._local_of = None
        handle = await self.lookup()
        try:
            return await getattr(handle, method).remote(*args, **kwargs)
        except RayActorError as e:
            fresh = await self.lookup(refresh=True)  # RecordError: gone without a successor
            if fresh == handle:  # the same actor (restarting): its error stands
                raise ours(e) from None
        except RayError as e:
            raise ours(e) from None
        return await ray_call(getattr(fresh, method).remote(*args, **kwargs))

    # ------------------------------------------------------------------ agents

    async def get_agent(self, agent_id: str) -> AgentInfo | None:
        found: AgentInfo | None = await self._call("get_agent", agent_id)
        return found

    async def list_agents(
        self,
        tenant: str | None = None,
        *,
        parent_id: str | None = None,
        top_level: bool = False,
        status: AgentStatus | list[AgentStatus] | None = None,
        limit: int = MAX_LIMIT,
    ) -> list[AgentInfo]:
        """Agents, oldest first, filtered by every argument given (see ``RecordStore``)."""
        agents: list[AgentInfo] = await self._call(
            "list_agents",
            tenant=tenant,
            parent_id=parent_id,
            top_level=top_level,
            status=status,
            limit=limit,
        )
        return agents

    async def admit_agent(self, info: AgentInfo) -> None:
        """Record a new agent once its tenant's quotas allow it (``QuotaExceededError``)."""
        await self._call("admit_agent", info)

    async def put_agent(self, info: AgentInfo) -> None:
        await self._call("put_agent", info)

    async def close_agent(self, agent_id: str, status: AgentStatus, error: str) -> None:
        """Record the agent ended, with its open tasks."""
        await self._call("close_agent", agent_id, status, error)

    # ------------------------------------------------------------------ tasks and events

    async def get_task(self, task_id: str) -> TaskInfo | None:
        found: TaskInfo | None = await self._call("get_task", task_id)
        return found

    async def get_task_of(self, task_id: str, tenant: str) -> TaskInfo | None:
        """The task if its agent belongs to ``tenant``, else None."""
        found: TaskInfo | None = await self._call("get_task_of", task_id, tenant)
        return found

    async def list_tasks(
        self,
        *,
        agent_id: str | None = None,
        tenant: str | None = None,
        state: TaskState | None = None,
        parent_task_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[TaskInfo]:
        tasks: list[TaskInfo] = await self._call(
            "list_tasks",
            agent_id=agent_id,
            tenant=tenant,
            state=state,
            parent_task_id=parent_task_id,
            limit=limit,
            offset=offset,
        )
        return tasks

    async def with_usage(self, tasks: list[TaskInfo]) -> list[TaskInfo]:
        """``tasks`` with their ``usage`` and ``subtree_usage`` filled in (from the events)."""
        if not tasks:
            return tasks
        filled: list[TaskInfo] = await self._call("with_usage", tasks)
        return filled

    async def agent_usage(self, agent_id: str) -> tuple[Usage, Usage] | None:
        """What the agent's tasks spent, and those of its subtree of agents."""
        spent: tuple[Usage, Usage] | None = await self._call("agent_usage", agent_id)
        return spent

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
        """Events after ``after_seq`` (see ``RecordStore.events``: ``tenant``, ``before_at``,
        ``kinds`` and ``blob`` filter them too)."""
        given = {"tenant": tenant, "before_at": before_at, "kinds": kinds, "blob": blob}
        extra: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        events: list[Event] = await self._call(
            "events",
            task_id=task_id,
            agent_id=agent_id,
            after_seq=after_seq,
            limit=limit,
            **extra,
        )
        return events

    async def pin_task(self, task_id: str, pinned: bool = True) -> bool:
        done: bool = await self._call("pin_task", task_id, pinned)
        return done

    async def stats(self, tenant: str | None = None) -> StoreStats:
        """Agents by status and tasks by state, counted by the store (no page limit)."""
        counted: StoreStats = await self._call("stats", tenant)
        return counted

    async def get_blob(self, address: str) -> bytes:
        data: bytes = await self._call("get_blob", address)
        return data

    async def location(self) -> dict[str, str | None]:
        where: dict[str, str | None] = await self._call("location")
        return where

    # ------------------------------------------------------------------ tenants

    async def quotas(self, tenant: str) -> Quotas:
        quotas: Quotas = await self._call("quotas", tenant)
        return quotas

    async def set_quotas(self, tenant: str, update: Quotas) -> Quotas:
        quotas: Quotas = await self._call("set_quotas", tenant, update)
        return quotas

    async def add_api_key(self, key: ApiKey, digest: str) -> ApiKey:
        stored: ApiKey = await self._call("add_api_key", key, digest)
        return stored

    async def api_keys(
        self, tenant: str | None = None, include_revoked: bool = True
    ) -> list[ApiKey]:
        keys: list[ApiKey] = await self._call("api_keys", tenant, include_revoked)
        return keys

    async def revoke_api_key(self, key_id: str) -> ApiKey | None:
        revoked: ApiKey | None = await self._call("revoke_api_key", key_id)
        return revoked

    async def active_api_keys(self) -> list[tuple[str, str]]:
        """``(tenant, digest)`` of the keys in force."""
        rows: list[tuple[str, str]] = await self._call("active_api_keys")
        return rows

    # ------------------------------------------------------------------ console sessions

    async def add_session(self, session: ConsoleSession) -> ConsoleSession:
        """Record a console sign-in (idempotent by id)."""
        stored: ConsoleSession = await self._call("add_session", session)
        return stored

    async def session(self, session_id: str) -> ConsoleSession | None:
        """The console session with this id (read from the file on the recorder's node)."""
        found: ConsoleSession | None = await self._call("session", session_id)
        return found

    async def end_session(self, session_id: str) -> ConsoleSession | None:
        """End the session (sign-out); it as it is then, or None when unknown."""
        ended: ConsoleSession | None = await self._call("end_session", session_id)
        return ended

    async def cluster_secret(self, name: str) -> bytes:
        """The cluster's secret ``name`` (made by the recorder on first use)."""
        value: bytes = await self._call("cluster_secret", name)
        return value


def _session() -> tuple[str, str]:
    ctx = ray.get_runtime_context()
    return (ctx.get_job_id(), ctx.get_node_id())
