"""The runtime seen from outside the tree (the CLI, the HTTP app, a notebook): connect to
Ray, create top-level agents, find any agent or task by id, and read the records."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import RayActorError

from orchestrator.config import RAY_CLUSTER_ENV, RAY_LOOPBACK_ENV
from orchestrator.desktop import DesktopSpec, check_desktop
from orchestrator.domain import AgentInfo, AgentSpec, AgentStatus, Event, TaskInfo, TaskSpec, new_id
from orchestrator.errors import AgentError, NotFoundError, RecordError
from orchestrator.records import SQLiteStore

from ._agent import AgentActor, agent_options, failed_agent, start_agent
from ._names import NAMESPACE, POOL_NAME, RECORDER_NAME, actor_alive, actor_of
from ._pool import WarmPool, get_pool
from ._recorder import get_or_create_recorder, task_of

__all__ = ["RecorderRef", "Runtime", "init_ray"]

log = logging.getLogger(__name__)

_RUNNING = (AgentStatus.IDLE, AgentStatus.BUSY)
"""Statuses of an agent whose actor must be alive (a starting one may not have it yet)."""

FIRE_TIMEOUT_S = 120.0
"""How long a fired top-level agent may take to stop its subtree before it is killed."""


def init_ray(address: str | None = None, *, desktops: int | None = None) -> None:
    """Connect to a Ray cluster (``address`` or RAY_ADDRESS), or start a local one on loopback.

    A local cluster declares ``desktops`` units of the ``desktop`` resource (default: as many
    as fit in memory at ~300 MB per agent and its desktop).
    """
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)
        return
    if desktops is None:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        desktops = max(2, int(mem * 0.6 / (300 * 2**20)))
    # inherited by the raylet and Serve's proxy; the loopback one also keeps every port that
    # Ray opens for this cluster on 127.0.0.1
    for name, value in {**RAY_CLUSTER_ENV, **RAY_LOOPBACK_ENV}.items():
        os.environ.setdefault(name, value)
    # Ray read that variable when it was imported, before this call could set it: without
    # this, the GCS, the raylet and the workers of this local cluster listen on every
    # interface although the node's address is 127.0.0.1 (checked by test_local_up).
    from ray._private import ray_constants

    if os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0":
        ray_constants.ENABLE_RAY_CLUSTER = False
    ray.init(
        _node_ip_address="127.0.0.1",
        namespace=NAMESPACE,
        resources={"desktop": desktops},
        include_dashboard=False,
        log_to_driver=False,
    )


LOCAL_READS = frozenset({"get_agent", "get_task", "get_task_of", "active_api_keys"})
"""Recorder reads a process on the recorder's node makes from the records' file itself."""
LOCAL_CHECK_S = 2.0
"""How often a process reading the records locally checks that the recorder is the same."""


class RecorderRef:
    """The cluster's recorder, looked up by name once and kept, found again when replaced.

    Use it as the recorder's handle: ``await ref.get_task.remote(task_id)`` (each
    ``.remote()`` is a coroutine to await, not an ``ObjectRef``). A call that fails because
    the actor it went to has died looks the name up again and, when another actor holds it
    now (a replaced recorder), is made once more on that one (the recorder's methods that
    are reached this way are reads and upserts). A process that reconnects to Ray (another
    job or cluster) looks the recorder up afresh too.
    """

    def __init__(
        self, name: str = RECORDER_NAME, namespace: str = NAMESPACE, *, local_reads: bool = False
    ) -> None:
        self.name = name
        self.namespace = namespace
        self.local_reads = local_reads
        """Read agents and tasks by id straight from the records' SQLite file when this
        process runs on the recorder's node (one indexed read instead of an actor call)."""
        self._handle: Any = None
        self._session: tuple[str, str] | None = None
        self._local: SQLiteStore | None = None
        self._local_of: str | None = None
        """The recorder actor the local store belongs to (its id)."""
        self._checked_at = 0.0

    def handle(self, *, refresh: bool = False) -> Any:
        """The recorder's actor handle (``RecordError`` when no recorder is running)."""
        ctx = ray.get_runtime_context()
        session = (ctx.get_job_id(), ctx.get_node_id())
        if refresh or self._handle is None or session != self._session:
            self._handle = None
            try:
                self._handle = ray.get_actor(self.name, namespace=self.namespace)
            except ValueError:
                raise RecordError("the recorder is not running on this cluster") from None
            self._session = session
        return self._handle

    def __getattr__(self, method: str) -> _RecorderMethod:
        if method.startswith("_"):
            raise AttributeError(method)
        return _RecorderMethod(self, method)

    async def _local_store(self) -> SQLiteStore | None:
        """The records' file opened read-only, when it is on this node (else None).

        The recorder is pinned to its node and restarts there on the same directory; the
        name is looked up again every ``LOCAL_CHECK_S`` so that a recorder replaced by one
        elsewhere is noticed, and the local file is then dropped."""
        now = time.monotonic()
        handle = self.handle(refresh=now - self._checked_at > LOCAL_CHECK_S)
        if now - self._checked_at > LOCAL_CHECK_S:
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

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """``method`` of the recorder, on the actor that holds the name now."""
        if self.local_reads and method in LOCAL_READS:
            store = await self._local_store()
            if store is not None:
                try:
                    if method == "get_task_of":
                        return task_of(store, *args, **kwargs)
                    return getattr(store, method)(*args, **kwargs)
                except RecordError as e:  # the file went away: ask the recorder
                    log.warning("local read of the records failed: %s", e)
                    self._local_of = None
        handle = self.handle()
        try:
            return await getattr(handle, method).remote(*args, **kwargs)
        except RayActorError:
            fresh = self.handle(refresh=True)  # RecordError: gone without a successor
            if fresh == handle:  # the same actor (restarting): its error stands
                raise
        return await getattr(fresh, method).remote(*args, **kwargs)


class _RecorderMethod:
    def __init__(self, ref: RecorderRef, method: str) -> None:
        self._ref = ref
        self._method = method

    def remote(self, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        return self._ref.call(self._method, *args, **kwargs)


_shared: RecorderRef | None = None


class Runtime:
    """Entry point to the agent hierarchy.

    Example:
        >>> rt = Runtime.connect()                                  # doctest: +SKIP
        >>> user = await rt.create_agent("acme", AgentSpec(name="alice"))  # doctest: +SKIP
        >>> task = await rt.assign(user.id, TaskSpec(description="..."))   # doctest: +SKIP
    """

    def __init__(self, recorder: Any) -> None:
        self.recorder = recorder

    @classmethod
    def shared(cls) -> Runtime:
        """A runtime on this process's ``RecorderRef`` of the cluster's recorder: for servers
        that serve many requests (no lookup per request, a replaced recorder is still found).
        ``RecordError`` when no recorder is running."""
        global _shared
        if _shared is None:
            _shared = RecorderRef(local_reads=True)
        _shared.handle()
        return cls(_shared)

    @classmethod
    def connect(cls, address: str | None = None, *, data_dir: Path | None = None) -> Runtime:
        init_ray(address)
        return cls(get_or_create_recorder(data_dir))

    async def start_pool(self, size: int, spec: DesktopSpec | None = None) -> Any:
        """Keep ``size`` agents with ready desktops for warm hires (idempotent)."""
        check_desktop(spec or DesktopSpec())  # over a maximum it could never fill
        pool = get_pool()
        if pool is None:
            pool = WarmPool.options(  # type: ignore[attr-defined]
                name=POOL_NAME,
                namespace=NAMESPACE,
                lifetime="detached",
                get_if_exists=True,
                num_cpus=0,
            ).remote(size, spec)
        await pool.start.remote()
        return pool

    # ------------------------------------------------------------------ agents

    async def create_agent(self, tenant: str, spec: AgentSpec) -> AgentInfo:
        """Create a top-level ("user") agent with its desktop; returns once it is ready."""
        check_desktop(spec.desktop)  # over a maximum: ConfigError before anything starts
        path = f"{tenant}/{spec.name}"
        try:
            ray.get_actor(path, namespace=NAMESPACE)
        except ValueError:
            pass
        else:
            raise AgentError(f"an agent named {path!r} exists already")
        info = AgentInfo(id=new_id("agent"), path=path, tenant=tenant, parent_id=None, spec=spec)
        # The tenant's quotas, checked and the agent recorded in one recorder call (two
        # creates cannot both take the last slot): QuotaExceededError before anything starts.
        await self.recorder.admit_agent.remote(info)
        try:
            handle = AgentActor.options(**agent_options(path, detached=True)).remote(info)  # type: ignore[attr-defined]
        except ValueError as e:  # another create of the same name got there first
            taken = AgentError(f"an agent named {path!r} exists already")
            await self.recorder.put_agent.remote(failed_agent(info, taken))  # frees its slot
            raise taken from e
        try:
            return await start_agent(handle, path)
        except Exception as e:
            ray.kill(handle)
            await self.recorder.put_agent.remote(failed_agent(info, e))
            raise

    async def agent(self, agent_id: str, tenant: str | None = None) -> AgentInfo:
        """The agent as recorded. One recorded as running (idle or busy) whose actor is gone
        is recorded failed first (with its open tasks), so that this read agrees with its
        parent's tree at once instead of after the recorder's next sweep."""
        info = await self._record(agent_id, tenant)
        if info.status in _RUNNING and not await asyncio.to_thread(actor_alive, info):
            info = await self._dead(info)
        return info

    async def _record(self, agent_id: str, tenant: str | None = None) -> AgentInfo:
        info: AgentInfo | None = await self.recorder.get_agent.remote(agent_id)
        if info is None or (tenant is not None and info.tenant != tenant):
            raise NotFoundError(f"no agent {agent_id}")
        return info

    async def _dead(self, info: AgentInfo) -> AgentInfo:
        """Record an agent whose actor is gone as failed; returns the record as it is now."""
        await self.recorder.close_agent.remote(info.id, AgentStatus.FAILED, "actor died")
        return await self._record(info.id)

    async def handle(self, agent_id: str, tenant: str | None = None) -> Any:
        info = await self._record(agent_id, tenant)
        # A GCS lookup: off the event loop, so that a slow control plane stalls no request
        # but this one (the API's replicas serve many on one loop).
        handle = await asyncio.to_thread(actor_of, info)
        if handle is None:
            if info.status in _RUNNING:
                await self._dead(info)
            raise NotFoundError(f"agent {agent_id} ({info.path}) is not running")
        return handle

    async def list_agents(self, tenant: str | None = None) -> list[AgentInfo]:
        agents: list[AgentInfo] = await self.recorder.list_agents.remote(tenant=tenant)
        return agents

    async def fire(self, agent_id: str, tenant: str | None = None) -> None:
        """Fire an agent, top-level or not: its subtree and desktops go too."""
        info = await self.agent(agent_id, tenant)
        if info.parent_id is not None:
            parent = await self.handle(info.parent_id)
            await parent.fire.remote(agent_id)
            return
        handle = await self.handle(agent_id)
        try:
            await asyncio.wait_for(handle.shutdown.remote(), timeout=FIRE_TIMEOUT_S)
        except (RayActorError, TimeoutError) as e:
            ray.kill(handle, no_restart=True)
            why = "died" if isinstance(e, RayActorError) else "did not stop in time"
            # Its open tasks too: nothing of a killed agent may stay "running" for ever.
            await self.recorder.close_agent.remote(
                agent_id, AgentStatus.STOPPED, f"killed: it {why} when fired"
            )
            return
        ray.kill(handle, no_restart=True)

    # ------------------------------------------------------------------ tasks

    async def assign(self, agent_id: str, spec: TaskSpec, tenant: str | None = None) -> TaskInfo:
        handle = await self.handle(agent_id, tenant)
        task: TaskInfo = await handle.assign.remote(spec)
        return task

    async def task(self, task_id: str, tenant: str | None = None) -> TaskInfo:
        """The task; with ``tenant``, only if its agent belongs to that tenant (one call)."""
        task: TaskInfo | None
        if tenant is None:
            task = await self.recorder.get_task.remote(task_id)
        else:
            task = await self.recorder.get_task_of.remote(task_id, tenant)
        if task is None:
            raise NotFoundError(f"no task {task_id}")
        return task

    async def wait(self, task_id: str, timeout_s: float | None = None) -> TaskInfo:
        task = await self.task(task_id)
        handle = await self.handle(task.agent_id)
        done: TaskInfo = await handle.wait_task.remote(task_id, timeout_s)
        return done

    async def cancel(self, task_id: str, tenant: str | None = None) -> TaskInfo:
        task = await self.task(task_id, tenant)
        handle = await self.handle(task.agent_id)
        cancelled: TaskInfo = await handle.cancel_task.remote(task_id)
        return cancelled

    async def events(self, **filters: Any) -> list[Event]:
        events: list[Event] = await self.recorder.events.remote(**filters)
        return events
