"""The recorder: one actor that owns the record store, so every agent's records land in one
durable place (a call returns only once the record is committed).

Being detached and always alive, it is also the janitor: every ``JANITOR_INTERVAL_S`` it
removes desktops on its node whose owner is gone, and marks agents whose actor died (a
killed manager, say) as failed, with their open tasks, so nothing is left "running" forever.
Once at start and every ``GC_INTERVAL_S`` it removes the records that ended longer ago than
``ORCHESTRATOR_RECORDS_RETENTION_DAYS`` (see ``RecordStore.collect_garbage``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import ray

from orchestrator.desktop import reap
from orchestrator.domain import (
    OPEN_TASK_STATES,
    AgentInfo,
    AgentStatus,
    Event,
    EventKind,
    TaskInfo,
    TaskState,
)
from orchestrator.records import (
    MAX_LIMIT,
    ConsoleSession,
    GcReport,
    RecordStore,
    StoreStats,
    open_store,
)
from orchestrator.tenants import ApiKey, Quotas
from orchestrator.usage import Usage

from ._names import NAMESPACE, RECORDER_NAME, actor_alive, alive_actor_ids

__all__ = ["GC_INTERVAL_S", "JANITOR_INTERVAL_S", "Recorder", "get_or_create_recorder"]

log = logging.getLogger(__name__)

JANITOR_INTERVAL_S = 10.0
"""How often the recorder sweeps for orphaned desktops and checks every agent's actor."""

DEAD_AGENT_SWEEP_S = 2.0
"""How often the recorder looks for agents whose actor Ray no longer has as alive (one call
to its control store), to record them failed with their open tasks (issue 9, R2)."""

GC_INTERVAL_S = 3600.0
"""How often the recorder removes records older than the retention period."""

STARTING_GRACE_S = 120.0
"""An agent recorded as starting may not have its actor yet: leave it alone this long."""

SWEEP_PAGE = MAX_LIMIT
"""Records a sweep reads at a time; it reads page after page until it has seen them all."""

_LIVE = (AgentStatus.STARTING, AgentStatus.IDLE, AgentStatus.BUSY)
_ENDED = tuple(s for s in AgentStatus if s not in _LIVE)
_OPEN = OPEN_TASK_STATES
"""Every state of a task that has not ended: pending, running, waiting on subtasks or on a
person (the domain's list, so a state added there is swept too)."""


@ray.remote
class Recorder:
    """Serialises writes to the store; reads are served from the same store."""

    def __init__(self, data_dir: str | None = None) -> None:
        self._store: RecordStore = open_store(Path(data_dir) if data_dir else None)
        if not logging.getLogger().handlers:  # its lines go to the worker's log file
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        self._janitor: asyncio.Task[None] | None = None
        self._gc: asyncio.Task[None] | None = None
        # Who is alive, as Ray's control store says: the janitor's one question to Ray
        # (an attribute, so a test of the sweeps on a real store can answer it instead).
        self.actor_alive: Callable[[AgentInfo], bool] = actor_alive
        self.alive_actor_ids: Callable[[], set[str]] = alive_actor_ids
        self.sweep_page = SWEEP_PAGE

    async def start_janitor(self) -> None:
        """Start the periodic sweep (idempotent)."""
        self._ensure_janitor()

    async def _sweep_forever(self) -> None:
        """At once (a restarted cluster's agents are all gone), then every
        ``DEAD_AGENT_SWEEP_S``: close the records of agents whose actor is dead (with their
        open tasks); every ``JANITOR_INTERVAL_S`` also reap orphaned desktops, check each
        live agent's actor by id and fail open tasks of agents recorded as ended."""
        last_full = -JANITOR_INTERVAL_S
        while True:
            full = time.monotonic() - last_full >= JANITOR_INTERVAL_S
            if full:
                last_full = time.monotonic()
                try:
                    await asyncio.to_thread(reap)
                except Exception as e:  # noqa: BLE001 - the records' sweep comes next anyway
                    log.warning("janitor's reap failed: %s", e)
            try:
                await self.fail_dead_agents(by_id=full)
                if full:
                    await self.fail_orphaned_tasks()
            except Exception as e:  # noqa: BLE001 - the sweep must outlive any one failure
                log.warning("janitor sweep failed: %s", e)
            await asyncio.sleep(DEAD_AGENT_SWEEP_S)  # a periodic sweep: the interval is the point

    async def _collect_forever(self) -> None:
        from orchestrator.config import settings

        days = settings().records_retention_days
        if not days:
            return  # keep everything
        while True:
            try:
                report = await self.collect_garbage(days * 86_400.0)
                log.info("records older than %g days: %s", days, report.summary())
            except Exception as e:  # noqa: BLE001 - the next run may succeed
                log.warning("records garbage collection failed: %s", e)
            await asyncio.sleep(GC_INTERVAL_S)  # periodic: the interval is the point

    async def collect_garbage(
        self, older_than_s: float, dry_run: bool = False, vacuum: bool = False
    ) -> GcReport:
        """Remove records that ended more than ``older_than_s`` ago (``collect_garbage``)."""
        report: GcReport = await asyncio.to_thread(
            lambda: self._store.collect_garbage(older_than_s, dry_run=dry_run, vacuum=vacuum)
        )
        return report

    async def pin_task(self, task_id: str, pinned: bool = True) -> bool:
        """Pin (or unpin) a task's run against garbage collection; False if no such task."""
        found: bool = await asyncio.to_thread(self._store.pin_task, task_id, pinned)
        return found

    async def is_pinned(self, task_id: str) -> bool:
        return self._store.is_pinned(task_id)

    async def fail_dead_agents(self, by_id: bool = True) -> list[str]:
        """Mark agents whose actor is gone as failed, with their open tasks; return their ids.

        ``by_id=False``: agents whose recorded actor Ray has as alive are taken at its word
        (one call for all) and only the others are checked one by one."""
        alive = set() if by_id else await asyncio.to_thread(self.alive_actor_ids)
        dead: list[str] = []
        offset = 0  # past the live agents of the pages before (closed ones leave the list)
        while True:
            agents = await asyncio.to_thread(
                self._store.list_agents, status=_LIVE, limit=self.sweep_page, offset=offset
            )
            for info in agents:
                if (
                    info.status == AgentStatus.STARTING
                    and time.time() - info.created_at < STARTING_GRACE_S
                ) or (info.actor_id in alive or await asyncio.to_thread(self.actor_alive, info)):
                    offset += 1
                    continue
                dead.append(info.id)
                await self.close_agent(info.id, AgentStatus.FAILED, "actor died")
            if len(agents) < self.sweep_page:
                return dead

    async def fail_orphaned_tasks(self) -> list[str]:
        """Fail the open tasks of agents recorded as ended (stopped or failed: fired, or
        found dead), each with its event; return their ids. Nothing of a gone agent stays
        open, whatever wrote its last state."""
        agents: dict[str, AgentInfo | None] = {}

        async def why(task: TaskInfo) -> str:
            if task.agent_id not in agents:
                agents[task.agent_id] = await asyncio.to_thread(
                    self._store.get_agent, task.agent_id
                )
            agent = agents[task.agent_id]
            return _ended(agent) if agent is not None else "its agent is gone"

        return await self._fail_open_tasks(why, agent_status=_ENDED)

    async def _fail_open_tasks(
        self, why: Callable[[TaskInfo], Awaitable[str]], **filters: Any
    ) -> list[str]:
        """Fail every open task ``list_tasks(**filters)`` lists, page after page (a failed
        task leaves the list, so the next page is the next tasks); return their ids."""
        failed: dict[str, None] = {}
        while True:
            page = await asyncio.to_thread(
                self._store.list_tasks, state=_OPEN, limit=self.sweep_page, **filters
            )
            fresh = [t for t in page if t.id not in failed]
            for t in fresh:
                await self._fail_task(t, await why(t))
                failed[t.id] = None
            if len(page) < self.sweep_page or not fresh:  # all seen (or none would change)
                return list(failed)

    async def _fail_task(self, task: TaskInfo, error: str) -> None:
        """Record an open task as failed with ``error``, with its event, in one write."""
        gone = task.model_copy(
            update={
                "state": TaskState.FAILED,
                "error": error,
                "waiting": None,  # it waits for nobody any more
                "updated_at": time.time(),
            }
        )
        said = Event(
            kind=EventKind.TASK,
            agent_id=task.agent_id,
            task_id=task.id,
            data={"state": gone.state.value, "result": None, "error": error},
        )
        await self._write(self._store.put_task, gone, said)

    async def close_agent(self, agent_id: str, status: AgentStatus, error: str) -> None:
        """Record an agent whose actor is gone as ``status`` with ``error``, and fail its
        open tasks ("agent ... died"), each with its event. An agent recorded as ended
        (stopped or failed: fired meanwhile, say) keeps that record; its open tasks fail."""
        info = await asyncio.to_thread(self._store.get_agent, agent_id)
        if info is None:
            return
        why = _ended(info)
        if info.status in _LIVE:
            why = f"agent {info.path} died"
            closed = info.model_copy(update={"status": status, "error": error})
            await self._write(self._store.put_agent, closed)
            await self._write(
                self._store.append_event,
                Event(
                    kind=EventKind.AGENT,
                    agent_id=info.id,
                    data={"status": status.value, "error": error},
                ),
            )

        async def because(_: TaskInfo) -> str:
            return why

        await self._fail_open_tasks(because, agent_id=info.id)

    def _ensure_janitor(self) -> None:
        # Started from the first call rather than __init__ (which has no running loop), so
        # that a restarted recorder sweeps again too.
        if self._janitor is None:
            self._janitor = asyncio.create_task(self._sweep_forever())
        if self._gc is None:
            self._gc = asyncio.create_task(self._collect_forever())

    async def _write(self, fn: Any, *args: Any) -> Any:
        self._ensure_janitor()
        # The store serialises its own writes; threads let fsyncs and blob writes overlap.
        return await asyncio.to_thread(fn, *args)

    async def put_agent(self, info: AgentInfo) -> None:
        await self._write(self._store.put_agent, info)

    async def put_task(self, info: TaskInfo, event: Event | None = None) -> TaskInfo:
        """Store the task with the event announcing its state, in one transaction; returns
        the task as stored (an ended task stays as it ended: ``RecordStore.put_task``)."""
        stored: TaskInfo = await self._write(self._store.put_task, info, event)
        return stored

    async def append_event(self, event: Event) -> Event:
        stored: Event = await self._write(self._store.append_event, event)
        return stored

    async def append_event_with_blob(self, event: Event, data: bytes, media_type: str) -> Event:
        """Store a blob, then the event that refers to it: one call for a step."""

        self._ensure_janitor()

        def both() -> Event:
            address = self._store.put_blob(data, media_type)
            return self._store.append_event(event.model_copy(update={"blobs": [address]}))

        stored: Event = await asyncio.to_thread(both)
        return stored

    async def put_blob(self, data: bytes, media_type: str) -> str:
        address: str = await self._write(self._store.put_blob, data, media_type)
        return address

    # Point reads by primary key run on the event loop: each thread has its own SQLite
    # connection and WAL readers never wait for writers, so one indexed row costs less than
    # the hop to a worker thread would (these are the API's hottest calls).

    async def get_agent(self, agent_id: str) -> AgentInfo | None:
        return self._store.get_agent(agent_id)

    async def list_agents(self, **filters: Any) -> list[AgentInfo]:
        return await asyncio.to_thread(lambda: self._store.list_agents(**filters))

    async def get_task(self, task_id: str) -> TaskInfo | None:
        return self._store.get_task(task_id)

    async def get_task_of(self, task_id: str, tenant: str) -> TaskInfo | None:
        """The task if its agent belongs to ``tenant``, else None (one call for a tenant's
        read instead of the task, then its agent)."""

        return task_of(self._store, task_id, tenant)

    async def location(self) -> dict[str, str | None]:
        """Where the records are: this actor's node and the store's directory (processes on
        the same node may read them there directly, see ``actors.RecorderRef``)."""
        data_dir = getattr(self._store, "data_dir", None)
        return {
            "node_id": ray.get_runtime_context().get_node_id(),
            "data_dir": str(data_dir) if data_dir is not None else None,
        }

    async def list_tasks(self, **filters: Any) -> list[TaskInfo]:
        return await asyncio.to_thread(lambda: self._store.list_tasks(**filters))

    async def task_usage(self, task_ids: list[str]) -> dict[str, tuple[Usage, Usage]]:
        """``{task id: (its own usage, its subtree's)}``, summed from the events, priced with
        this process's ``ORCHESTRATOR_MODEL_PRICES``."""
        spent: dict[str, tuple[Usage, Usage]] = await asyncio.to_thread(
            self._store.task_usage, task_ids
        )
        return spent

    async def with_usage(self, tasks: list[TaskInfo]) -> list[TaskInfo]:
        """``tasks`` with their ``usage`` and ``subtree_usage`` filled in."""
        filled: list[TaskInfo] = await asyncio.to_thread(self._store.with_usage, tasks)
        return filled

    async def agent_usage(self, agent_id: str) -> tuple[Usage, Usage] | None:
        """What the agent's tasks spent, and those of its subtree of agents (None: unknown)."""
        spent: tuple[Usage, Usage] | None = await asyncio.to_thread(
            self._store.agent_usage, agent_id
        )
        return spent

    async def stats(self, tenant: str | None = None) -> StoreStats:
        """How many of ``tenant``'s (or all) agents are in each status and tasks in each
        state, counted by the store (no page limit)."""
        counted: StoreStats = await asyncio.to_thread(self._store.stats, tenant)
        return counted

    async def events(self, **filters: Any) -> list[Event]:
        return await asyncio.to_thread(lambda: self._store.events(**filters))

    async def get_blob(self, address: str) -> bytes:
        data: bytes = await asyncio.to_thread(self._store.get_blob, address)
        return data

    # ------------------------------------------------------------------ tenants
    # Keys and quotas live here so that every API replica, on any node, reads the same ones.

    async def admit_agent(self, info: AgentInfo) -> None:
        """Record a new agent once its tenant's quotas allow it (``QuotaExceededError``)."""
        await self._write(self._store.admit_agent, info)

    async def admit_task(self, info: TaskInfo) -> None:
        """Record a new task once its tenant's ``max_running_tasks`` allows it."""
        await self._write(self._store.admit_task, info)

    async def quotas(self, tenant: str) -> Quotas:
        return self._store.quotas(tenant)

    async def set_quotas(self, tenant: str, update: Quotas) -> Quotas:
        quotas: Quotas = await self._write(self._store.set_quotas, tenant, update)
        return quotas

    async def add_api_key(self, key: ApiKey, digest: str) -> ApiKey:
        """Store a key's record and its sha256 ``digest`` (the key itself never comes here)."""
        stored: ApiKey = await self._write(self._store.add_api_key, key, digest)
        return stored

    async def api_keys(
        self, tenant: str | None = None, include_revoked: bool = True
    ) -> list[ApiKey]:
        return self._store.api_keys(tenant, include_revoked=include_revoked)

    async def revoke_api_key(self, key_id: str) -> ApiKey | None:
        revoked: ApiKey | None = await self._write(self._store.revoke_api_key, key_id)
        return revoked

    async def active_api_keys(self) -> list[tuple[str, str]]:
        """``(tenant, digest)`` of the keys in force (the API replicas poll this)."""
        return self._store.active_api_keys()

    # ------------------------------------------------------------------ console sessions

    async def add_session(self, session: ConsoleSession) -> ConsoleSession:
        """Record a console sign-in (the digest of its cookie's token, never the token)."""
        stored: ConsoleSession = await self._write(self._store.add_session, session)
        return stored

    async def session(self, session_id: str) -> ConsoleSession | None:
        return self._store.session(session_id)

    async def end_session(self, session_id: str) -> ConsoleSession | None:
        ended: ConsoleSession | None = await self._write(self._store.end_session, session_id)
        return ended

    async def cluster_secret(self, name: str) -> bytes:
        """The cluster's secret ``name`` (made on first use): API replicas sign tickets."""
        value: bytes = await self._write(self._store.cluster_secret, name)
        return value


def _ended(agent: AgentInfo) -> str:
    """Why a task of an agent recorded as ended cannot go on."""
    return f"agent {agent.path} is {agent.status.value}" + (
        f": {agent.error}" if agent.error else ""
    )


def task_of(store: Any, task_id: str, tenant: str) -> TaskInfo | None:
    """The task in ``store`` if its agent belongs to ``tenant``, else None."""
    task: TaskInfo | None = store.get_task(task_id)
    if task is None:
        return None
    agent = store.get_agent(task.agent_id)
    return task if agent is not None and agent.tenant == tenant else None


def get_or_create_recorder(data_dir: Path | None = None) -> Any:
    """The cluster's recorder, created on this node (where the data directory is) if needed."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node = ray.get_runtime_context().get_node_id()
    recorder = Recorder.options(  # type: ignore[attr-defined]
        name=RECORDER_NAME,
        namespace=NAMESPACE,
        lifetime="detached",
        num_cpus=0,
        max_restarts=-1,
        max_task_retries=3,
        max_concurrency=64,
        get_if_exists=True,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=False),
    ).remote(str(data_dir) if data_dir else None)
    recorder.start_janitor.remote()
    return recorder
