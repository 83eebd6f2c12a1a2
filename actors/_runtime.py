"""The runtime seen from outside the tree (the CLI, the HTTP app, a notebook): connect to
Ray, create top-level agents, find any agent or task by id, and read the records."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import ray
from ray._common.constants import HEAD_NODE_RESOURCE_NAME
from ray.exceptions import RayActorError, RayError

from orchestrator.config import RAY_CLUSTER_ENV, RAY_LOOPBACK_ENV, ray_env
from orchestrator.desktop import DesktopSpec, check_desktop
from orchestrator.domain import (
    AgentInfo,
    AgentSpec,
    AgentStatus,
    Event,
    EventKind,
    TaskInfo,
    TaskSpec,
    TaskState,
    new_id,
)
from orchestrator.errors import AgentError, AgentGoneError, NotFoundError
from orchestrator.front import Capacity
from orchestrator.records import StoreStats

from ._agent import AgentActor, agent_options, failed_agent, start_agent
from ._agent_ref import RayAgentRef, ours, ray_call
from ._capacity import read_capacity
from ._names import NAMESPACE, POOL_NAME, actor_alive, actor_of
from ._pool import WarmPool, get_pool
from ._recorder import get_or_create_recorder
from ._recorder_ref import LOCAL_CHECK_S, RecorderRef

__all__ = ["LOCAL_CHECK_S", "RayAgentRef", "RecorderRef", "Runtime", "init_ray"]

log = logging.getLogger(__name__)

_RUNNING = (AgentStatus.IDLE, AgentStatus.BUSY)
"""Statuses of an agent whose actor must be alive (a starting one may not have it yet)."""

FIRE_TIMEOUT_S = 120.0
"""How long a fired top-level agent may take to stop its subtree before it is killed."""
SUBTREE_CALL_TIMEOUT_S = 30.0
"""Longest a pause or resume of a task's subtasks may take, all of them (then it stops)."""


def init_ray(address: str | None = None, *, desktops: int | None = None) -> None:
    """Connect to a Ray cluster (``address`` or RAY_ADDRESS), or start a local one on loopback.

    A local cluster declares ``desktops`` units of the ``desktop`` resource (default: as many
    as fit in memory at ~300 MB per agent and its desktop).
    """
    if ray.is_initialized():
        return
    address = address or ray_env().address
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

    if ray_env().enable_windows_or_osx_cluster == "0":
        ray_constants.ENABLE_RAY_CLUSTER = False
    ray.init(
        _node_ip_address="127.0.0.1",
        namespace=NAMESPACE,
        resources={"desktop": desktops},
        include_dashboard=False,
        log_to_driver=False,
    )


_shared: RecorderRef | None = None


class Runtime:
    """Entry point to the agent hierarchy (``orchestrator.front.Runtime`` on Ray).

    Every call goes through typed references (``RecorderRef``, ``RayAgentRef``) that raise
    Ray's errors as ours; lookups on the control plane run in a worker thread.

    Example:
        >>> rt = Runtime.connect()                                  # doctest: +SKIP
        >>> user = await rt.create_agent("acme", AgentSpec(name="alice"))  # doctest: +SKIP
        >>> task = await rt.assign(user.id, TaskSpec(description="..."))   # doctest: +SKIP
    """

    def __init__(self, recorder: RecorderRef | Any) -> None:
        self.records = (
            recorder if isinstance(recorder, RecorderRef) else RecorderRef(handle=recorder)
        )
        """The recorder, typed."""

    @property
    def recorder(self) -> Any:
        """The recorder's raw actor handle (for tests and tools; may look the name up,
        blocking: coroutines use ``records``)."""
        return self.records.handle()

    @classmethod
    def shared(cls) -> Runtime:
        """A runtime on this process's ``RecorderRef`` of the cluster's recorder: for servers
        that serve many requests (no lookup per request, a replaced recorder is still found,
        its records read from the file on its node). Looks nothing up: the first call does
        (``RecordError`` when no recorder is running)."""
        global _shared
        if _shared is None:
            _shared = RecorderRef(local_reads=True)
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
                # On the head: a worker node may be an autoscaled one that goes away.
                resources={HEAD_NODE_RESOURCE_NAME: 0.001},
            ).remote(size, spec)
        await pool.start.remote()
        return pool

    # ------------------------------------------------------------------ agents

    async def create_agent(self, tenant: str, spec: AgentSpec) -> AgentInfo:
        """Create a top-level ("user") agent with its desktop; returns once it is ready."""
        check_desktop(spec.desktop)  # over a maximum: ConfigError before anything starts
        path = f"{tenant}/{spec.name}"
        if await asyncio.to_thread(_named, path):
            raise AgentError(f"an agent named {path!r} exists already")
        info = AgentInfo(id=new_id("agent"), path=path, tenant=tenant, parent_id=None, spec=spec)
        # The tenant's quotas, checked and the agent recorded in one recorder call (two
        # creates cannot both take the last slot): QuotaExceededError before anything starts.
        await self.records.admit_agent(info)
        try:
            handle = AgentActor.options(**agent_options(path, detached=True)).remote(info)  # type: ignore[attr-defined]
        except ValueError as e:  # another create of the same name got there first
            taken = AgentError(f"an agent named {path!r} exists already")
            await self.records.put_agent(failed_agent(info, taken))  # frees its slot
            raise taken from e
        try:
            return await ray_call(start_agent(handle, path, self._waiting_notice(info)))
        except Exception as e:
            ray.kill(handle)
            await self.records.put_agent(failed_agent(info, e))
            raise

    def _waiting_notice(self, info: AgentInfo) -> Callable[[str], Awaitable[None]]:
        """Records an event that ``info``'s new agent waits for a node (``wait_placed``)."""

        async def waiting(text: str) -> None:
            said = Event(kind=EventKind.AGENT, agent_id=info.id, task_id=None, data={"node": text})
            recorder = await self.records.lookup()
            await recorder.append_event.remote(said)

        return waiting

    async def agent(self, agent_id: str, tenant: str | None = None) -> AgentInfo:
        """The agent as recorded. One recorded as running (idle or busy) whose actor is gone
        is recorded failed first (with its open tasks), so that this read agrees with its
        parent's tree at once instead of after the recorder's next sweep."""
        info = await self._record(agent_id, tenant)
        if info.status in _RUNNING and not await asyncio.to_thread(actor_alive, info):
            info = await self._dead(info)
        spent = await self.records.agent_usage(info.id)
        if spent is not None:  # what its tasks spent, and its subtree's
            info = info.model_copy(update={"usage": spent[0], "subtree_usage": spent[1]})
        return info

    async def _record(self, agent_id: str, tenant: str | None = None) -> AgentInfo:
        info = await self.records.get_agent(agent_id)
        if info is None or (tenant is not None and info.tenant != tenant):
            raise NotFoundError(f"no agent {agent_id}")
        return info

    async def _dead(self, info: AgentInfo) -> AgentInfo:
        """Record an agent whose actor is gone as failed; returns the record as it is now."""
        await self.records.close_agent(info.id, AgentStatus.FAILED, "actor died")
        return await self._record(info.id)

    async def agent_ref(self, agent_id: str, tenant: str | None = None) -> RayAgentRef:
        """The running agent (``NotFoundError`` when it is not running)."""
        info = await self._record(agent_id, tenant)
        # A GCS lookup: off the event loop, so that a slow control plane stalls no request
        # but this one (the API's replicas serve many on one loop).
        handle = await asyncio.to_thread(actor_of, info)
        if handle is None:
            if info.status in _RUNNING:
                await self._dead(info)
            raise NotFoundError(f"agent {agent_id} ({info.path}) is not running")
        return RayAgentRef(info, handle)

    async def handle(self, agent_id: str, tenant: str | None = None) -> Any:
        """The running agent's raw actor handle (for tools and tests; fronts use
        ``agent_ref``)."""
        return (await self.agent_ref(agent_id, tenant)).handle

    async def list_agents(self, tenant: str | None = None) -> list[AgentInfo]:
        return await self.records.list_agents(tenant)

    async def fire(self, agent_id: str, tenant: str | None = None) -> None:
        """Fire an agent, top-level or not: its subtree and desktops go too."""
        info = await self.agent(agent_id, tenant)
        if info.parent_id is not None:
            parent = await self.agent_ref(info.parent_id)
            await parent.fire(agent_id)
            return
        handle = await self.handle(agent_id)
        try:
            await asyncio.wait_for(handle.shutdown.remote(), timeout=FIRE_TIMEOUT_S)
        except (RayActorError, TimeoutError) as e:
            ray.kill(handle, no_restart=True)
            why = "died" if isinstance(e, RayActorError) else "did not stop in time"
            # Its open tasks too: nothing of a killed agent may stay "running" for ever.
            await self.records.close_agent(
                agent_id, AgentStatus.STOPPED, f"killed: it {why} when fired"
            )
            return
        except RayError as e:
            raise ours(e) from None
        ray.kill(handle, no_restart=True)

    # ------------------------------------------------------------------ tasks

    async def assign(self, agent_id: str, spec: TaskSpec, tenant: str | None = None) -> TaskInfo:
        ref = await self.agent_ref(agent_id, tenant)
        return await ref.assign(spec)

    async def task(self, task_id: str, tenant: str | None = None) -> TaskInfo:
        """The task with its usage and its subtree's; with ``tenant``, only if its agent
        belongs to that tenant."""
        return (await self.records.with_usage([await self._task(task_id, tenant)]))[0]

    async def _task(self, task_id: str, tenant: str | None = None) -> TaskInfo:
        """The task as recorded (one call)."""
        if tenant is None:
            task = await self.records.get_task(task_id)
        else:
            task = await self.records.get_task_of(task_id, tenant)
        if task is None:
            raise NotFoundError(f"no task {task_id}")
        return task

    async def list_tasks(
        self,
        tenant: str,
        *,
        agent_id: str | None = None,
        state: TaskState | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[TaskInfo]:
        """The tenant's tasks, newest first (an agent of another tenant: ``NotFoundError``)."""
        if agent_id is not None:
            await self._record(agent_id, tenant)
        tasks = await self.records.list_tasks(
            agent_id=agent_id, tenant=tenant, state=state, limit=limit, offset=offset
        )
        return await self.records.with_usage(tasks)

    async def wait(self, task_id: str, timeout_s: float | None = None) -> TaskInfo:
        task = await self._task(task_id)
        ref = await self.agent_ref(task.agent_id)
        return await ref.wait_task(task_id, timeout_s)

    async def cancel(self, task_id: str, tenant: str | None = None) -> TaskInfo:
        task = await self._task(task_id, tenant)
        ref = await self.agent_ref(task.agent_id)
        return await ref.cancel_task(task_id)

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
        return await self.records.events(
            task_id=task_id,
            agent_id=agent_id,
            after_seq=after_seq,
            limit=limit,
            tenant=tenant,
            before_at=before_at,
            kinds=kinds,
            blob=blob,
        )

    async def capacity(self, tenant: str | None = None) -> Capacity:
        """Desktops per node, from Ray (``_capacity``), with the agents still starting
        (``tenant``: only its own)."""
        starting = await self.records.list_agents(tenant, status=AgentStatus.STARTING)
        return await asyncio.to_thread(read_capacity, starting)

    # ------------------------------------------------------------------ a person's part

    async def _open_task(self, task_id: str, tenant: str | None) -> tuple[TaskInfo, RayAgentRef]:
        """The task (``NotFoundError`` for an unknown id or another tenant's) and its running
        agent; ``AgentError`` once it has ended."""
        task = await self._task(task_id, tenant)
        if task.state.done:
            raise AgentError(f"task {task_id} has ended ({task.state.value})")
        return task, await self.agent_ref(task.agent_id)

    async def answer(self, task_id: str, text: str, tenant: str | None = None) -> TaskInfo:
        _, ref = await self._open_task(task_id, tenant)
        return await ref.answer(task_id, text)

    async def approve(self, task_id: str, tenant: str | None = None) -> TaskInfo:
        _, ref = await self._open_task(task_id, tenant)
        return await ref.approve(task_id, True)

    async def reject(self, task_id: str, reason: str, tenant: str | None = None) -> TaskInfo:
        _, ref = await self._open_task(task_id, tenant)
        return await ref.approve(task_id, False, reason)

    async def pause(
        self, task_id: str, tenant: str | None = None, subtree: bool = True
    ) -> TaskInfo:
        """Pause the task, then (with ``subtree``) every open subtask below it."""
        task, ref = await self._open_task(task_id, tenant)
        paused = await ref.pause_task(task_id)
        if subtree:
            await self._each_below(task, "pause_task")
        return paused

    async def resume(
        self, task_id: str, tenant: str | None = None, subtree: bool = True
    ) -> TaskInfo:
        """Resume the task and (with ``subtree``) its paused subtasks; ``AgentError`` only when
        none of them was paused (or about to be)."""
        task, ref = await self._open_task(task_id, tenant)
        try:
            task = await ref.resume_task(task_id)
        except AgentError:
            if not subtree or not await self._each_below(task, "resume_task"):
                raise
            return await self.task(task_id)
        if subtree:
            await self._each_below(task, "resume_task")
        return task

    async def _each_below(self, task: TaskInfo, call: Literal["pause_task", "resume_task"]) -> int:
        """Call ``call`` on every open subtask below ``task`` (recursively, read from the
        records); returns how many accepted it. Subtasks that cannot (not started yet, ended
        meanwhile, their agent gone, any failure) are logged and passed over; each task is
        visited once (damaged records with a cycle end), and the walk stops after
        ``SUBTREE_CALL_TIMEOUT_S`` (logged)."""
        done = 0
        seen = {task.id}
        below = [t for t in task.subtask_ids if t not in seen]
        try:
            async with asyncio.timeout(SUBTREE_CALL_TIMEOUT_S):
                while below:
                    sub_id = below.pop(0)
                    if sub_id in seen:
                        continue
                    seen.add(sub_id)
                    try:
                        sub = await self.records.get_task(sub_id)
                        if sub is None:
                            continue
                        below.extend(t for t in sub.subtask_ids if t not in seen)
                        if sub.state.done:
                            continue
                        ref = await self.agent_ref(sub.agent_id)
                        await getattr(ref, call)(sub.id)
                        done += 1
                    except (AgentError, AgentGoneError, NotFoundError) as e:
                        log.info("subtask %s: no %s: %s", sub_id, call, e)
                    except Exception as e:  # noqa: BLE001 - one subtask never stops the rest
                        log.warning("subtask %s: %s failed: %r", sub_id, call, e)
        except TimeoutError:
            log.warning(
                "%s below task %s: stopped after %g s (%d done, %d left)",
                call,
                task.id,
                SUBTREE_CALL_TIMEOUT_S,
                done,
                len(below),
            )
        return done

    async def pin(self, task_id: str, pinned: bool, tenant: str | None = None) -> None:
        """Pin the task's run (kept by garbage collection whatever its age), or unpin it."""
        await self._task(task_id, tenant)  # NotFoundError for an unknown id or another tenant's
        await self.records.pin_task(task_id, pinned)

    async def stats(self, tenant: str) -> StoreStats:
        """The tenant's agents by status and tasks by state, counted by the store."""
        return await self.records.stats(tenant)

    async def blob(self, address: str) -> bytes:
        return await self.records.get_blob(address)


def _named(path: str) -> bool:
    """Whether an actor holds the agent path ``path`` (a control-plane call: blocks)."""
    try:
        ray.get_actor(path, namespace=NAMESPACE)
    except ValueError:
        return False
    return True
