"""The agent actor: a Ray actor that owns one desktop, hires and fires children, and runs
tasks (see ``_tasks`` and ``_runner``). Every state change is recorded before it is reported."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import ray
from ray.exceptions import RayActorError

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
    new_id,
)
from orchestrator.errors import AgentError, NotFoundError

from ._agent_start import agent_options, failed_agent, start_agent
from ._files import read_path, write_file
from ._hire import adopt_pooled, start_cold
from ._lease import AgentLease, LeasePart
from ._names import NAMESPACE, RECORDER_NAME, child_path
from ._pool import get_pool
from ._tasks import AgentTasks, RecorderRecords
from ._vnc import RelayPart, VncSessions

if TYPE_CHECKING:
    from orchestrator.desktop import Desktop, LiveView, PreparedDesktop

__all__ = ["AgentActor", "agent_options", "failed_agent", "start_agent"]

log = logging.getLogger(__name__)

REAP_INTERVAL_S = 15.0
"""How often each agent sweeps its node for desktops whose owner is gone."""

DESKTOP_WATCH_S = 5.0
"""How often an agent checks that its desktop container still runs (and recreates it)."""

PARENT_WATCH_S = 5.0
"""How often an adopted (warm-hired) agent checks that its parent still lives."""


def _preload() -> None:
    """Import what starting a desktop needs (X11, Docker: a few hundred ms), on a
    thread of its own while a new actor waits for its start call: a cold hire starts its
    desktop while Ray starts the actor, so the actor's process is up earlier this way."""
    from orchestrator.desktop import adopt_desktop  # noqa: F401


def _reap() -> None:
    from orchestrator.desktop import reap

    reap()


@dataclass
class _Child:
    info: AgentInfo
    handle: Any
    busy: bool = False


@ray.remote
class AgentActor(RelayPart, LeasePart):
    """One agent: a role, a brain, a desktop of its own, and the children it hired."""

    def __init__(self, info: AgentInfo) -> None:
        self._actor_name = info.path
        self._actor_id = ray.get_runtime_context().get_actor_id()
        self.info = info.model_copy(update={"actor": info.path, "actor_id": self._actor_id})
        self.desktop: Desktop | None = None
        self.children: dict[str, _Child] = {}
        self._recorder = ray.get_actor(RECORDER_NAME, namespace=NAMESPACE)
        self._tasks = AgentTasks(self, RecorderRecords(self._recorder))
        self.lease = AgentLease(info.id, self._tasks, self._lease_event)
        self._reaper: asyncio.Task[None] | None = None
        self._parent_watch: asyncio.Task[None] | None = None
        self._desktop_watch: asyncio.Task[None] | None = None
        self._desktop_swap = asyncio.Lock()  # a reset and the watchdog's recreate, one at a time
        self._pool: Any = None
        self.relay = VncSessions(self.lease.holds)  # live views, relayed to the API (_vnc)
        threading.Thread(target=_preload, name="preload", daemon=True).start()

    def __repr__(self) -> str:
        return f"Agent({self.info.path})"

    # ------------------------------------------------------------------ lifecycle

    async def start(
        self, record: bool = True, prepared: PreparedDesktop | None = None
    ) -> AgentInfo:
        """Start the agent's desktop on this node; returns once it is ready.

        A pooled agent (``record=False``) has no identity yet: it is recorded on adoption.
        ``prepared``: a desktop the parent started for it meanwhile (see ``_hire``), taken
        over when it runs on this host (else this agent starts one of its own).
        """
        try:
            self.desktop = await self._start_desktop(record, prepared)
            if not record:  # pooled: warm means its shell is connected too (see Desktop)
                try:
                    await self.desktop.connect_shell()
                except BaseException:
                    await self.desktop.stop()
                    self.desktop = None
                    raise
        except Exception as e:
            if record:
                await self._set_status(AgentStatus.FAILED, error=f"desktop failed to start: {e}")
            raise
        self._reaper = asyncio.create_task(self._reap_loop())
        self._desktop_watch = asyncio.create_task(self._watch_desktop())
        if record:
            await self._set_status(AgentStatus.IDLE)
        else:
            self.info = self.info.model_copy(update={"status": AgentStatus.IDLE})
        return self.info

    async def adopt(self, info: AgentInfo, parent_path: str) -> AgentInfo:
        """Take on an identity (a pooled agent being hired) and watch the new parent."""
        if self.desktop is None:
            raise AgentError("a pooled agent without a desktop cannot be adopted")
        self.info = info.model_copy(update={"actor": self._actor_name, "actor_id": self._actor_id})
        self.lease.book.agent_id = info.id
        await self._set_status(AgentStatus.IDLE)
        self._parent_watch = asyncio.create_task(self._watch_parent(parent_path))
        return self.info

    async def _watch_parent(self, parent_path: str) -> None:
        """An adopted agent is not fate-shared with its parent by Ray: follow it on our own."""
        while True:
            await asyncio.sleep(PARENT_WATCH_S)  # a heartbeat: the interval is the point
            try:
                parent = ray.get_actor(parent_path, namespace=NAMESPACE)
                await asyncio.wait_for(parent.get_info.remote(), timeout=PARENT_WATCH_S * 2)
            except (ValueError, RayActorError, TimeoutError):
                log.warning("parent %s is gone: %s shuts down", parent_path, self.info.path)
                await self.shutdown()
                ray.kill(ray.get_runtime_context().current_actor, no_restart=True)
                return

    async def _start_desktop(
        self, record: bool = True, prepared: PreparedDesktop | None = None
    ) -> Desktop:
        """A desktop of this agent's spec on this node, owned by this actor's process:
        ``prepared`` when it runs on this host, else a new one.

        While it waits for one of the node's start slots, the agent stays ``starting`` and
        an event says it is queued (``record``: a pooled agent, unrecorded, says nothing)."""
        if prepared is not None and prepared.here:
            from orchestrator.desktop import adopt_desktop

            return await adopt_desktop(prepared)

        async def queued() -> None:
            if record:
                await self._event(EventKind.AGENT, None, {"desktop": "queued for a start slot"})

        from orchestrator.desktop import Desktop, process_owner

        return await Desktop.start(
            self.info.spec.desktop,
            owner=process_owner(os.getpid()),
            labels={"orchestrator.agent": self.info.id, "orchestrator.path": self.info.path},
            on_queued=queued,
        )

    async def _watch_desktop(self) -> None:
        """Notice a desktop that died under us (killed, OOM) and start a fresh one.

        A step running on it fails with ``DesktopGoneError`` (its task fails with the reason);
        the agent itself stays useful: the next task, screenshot or action gets a new desktop.
        """
        while True:
            await asyncio.sleep(DESKTOP_WATCH_S)  # a heartbeat: the interval is the point
            async with self._desktop_swap:
                desk = self.desktop
                if desk is None or await desk.is_alive():
                    continue
                log.warning("desktop of %s is gone: starting a new one", self.info.path)
                await self._event(EventKind.AGENT, None, {"desktop": "lost; starting a new one"})
                try:
                    await self._replace_desktop(desk)
                    await self._event(EventKind.AGENT, None, {"desktop": "recreated"})
                except Exception as e:  # noqa: BLE001 - try again on the next beat
                    log.warning("could not recreate the desktop of %s: %s", self.info.path, e)

    async def _replace_desktop(self, desk: Desktop) -> None:
        """Stop ``desk`` and start a new desktop of the agent's spec: a new container in a new
        socket directory (the caller holds ``_desktop_swap``). Should the start fail, the
        agent has no running desktop until the watchdog's next beat starts one."""
        await self.relay.close_all()
        await desk.stop()
        self.desktop = await self._start_desktop()

    async def reset_desktop(self, holder: str | None = None) -> AgentInfo:
        """Replace the agent's desktop with a new one of its spec: a new container and socket
        directory, nothing of the old one kept. For a desktop broken
        from inside (e.g. a root command overwrote ``/etc/passwd``). Refused (``AgentError``)
        while one of the agent's tasks runs: cancel it first. Should the new desktop fail to
        start, the error is raised and the watchdog starts one on its next beat. Refused too
        while someone other than ``holder`` (the caller) holds the desktop's lease."""
        self.lease.check_input(holder)
        if self._tasks.busy:
            raise AgentError(
                f"{self.info.path} is running a task: cancel it before resetting its desktop"
            )
        async with self._desktop_swap:
            desk = self._desk()
            await self._event(EventKind.AGENT, None, {"desktop": "resetting"})
            await self._replace_desktop(desk)
            await self._event(EventKind.AGENT, None, {"desktop": "reset", "id": self._desk().id})
        return self.info

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(REAP_INTERVAL_S)  # a periodic sweep: the interval is the point
            try:
                await asyncio.to_thread(_reap)
            except Exception as e:  # noqa: BLE001 - the sweep must not kill the agent
                log.warning("reaper sweep failed: %s", e)

    async def shutdown(self) -> None:
        """Cancel tasks, fire the whole subtree, stop the desktop."""
        await self._tasks.cancel_all("cancelled: the agent was stopped")
        await self.lease.close()
        await asyncio.gather(
            *(self.fire(cid) for cid in list(self.children)), return_exceptions=True
        )
        for bg in (self._reaper, self._parent_watch, self._desktop_watch):
            if bg is not None and bg is not asyncio.current_task():
                bg.cancel()
        await self.relay.close_all()
        if self.desktop is not None:
            await self.desktop.stop()
            self.desktop = None
        await self._set_status(AgentStatus.STOPPED)

    async def _set_status(self, status: AgentStatus, error: str | None = None) -> None:
        self.info = self.info.model_copy(update={"status": status, "error": error})
        await self._recorder.put_agent.remote(self.info)
        await self._event(EventKind.AGENT, None, {"status": status.value, "error": error})

    async def _event(
        self,
        kind: EventKind,
        task_id: str | None,
        data: dict[str, Any],
        screenshot: bytes | None = None,
        blob: tuple[bytes, str] | None = None,
    ) -> None:
        event = Event(kind=kind, agent_id=self.info.id, task_id=task_id, data=data)
        if screenshot is not None:
            blob = (screenshot, "image/jpeg")
        if blob is None:
            await self._recorder.append_event.remote(event)
        else:
            await self._recorder.append_event_with_blob.remote(event, *blob)

    # ------------------------------------------------------------------ hierarchy

    async def get_info(self) -> AgentInfo:
        return self.info

    async def process_id(self) -> int:
        """The pid of this actor's worker process (for operators and failure tests)."""
        return os.getpid()

    async def hire(self, spec: AgentSpec) -> AgentInfo:
        """Hire a child with ``spec`` (its own actor and desktop); returns once it is ready."""
        from orchestrator.desktop import check_desktop

        check_desktop(spec.desktop)  # over a maximum: ConfigError before anything starts
        if any(c.info.spec.name == spec.name for c in self.children.values()):
            raise AgentError(f"{self.info.path} already has a child named {spec.name!r}")
        info = AgentInfo(
            id=new_id("agent"),
            path=child_path(self.info.path, spec.name),
            tenant=self.info.tenant,
            parent_id=self.info.id,
            spec=spec,
        )
        # Register before the first await, so that concurrent hires see the name as taken.
        self.children[info.id] = _Child(info=info, handle=None, busy=True)
        try:
            # The tenant's quotas (max_desktops), checked and the child recorded in one
            # recorder call: QuotaExceededError before any actor or desktop starts.
            await self._recorder.admit_agent.remote(info)
            handle, info = await self._start_child(info)
        except Exception:
            self.children.pop(info.id, None)
            raise
        self.children[info.id].handle = handle
        self.children[info.id].info = info
        self.children[info.id].busy = False
        await self._event(
            EventKind.MESSAGE,
            None,
            {"from": self.info.path, "to": info.path, "text": f"hired as {spec.role}"},
        )
        return info

    async def _start_child(self, info: AgentInfo) -> tuple[Any, AgentInfo]:
        """A warm hire from the pool when it has a desktop of this spec, else a cold one."""
        if self._pool is None:
            self._pool = get_pool()
        pool = self._pool
        if pool is not None:
            try:
                taken = await pool.take.remote(info.spec.desktop)
            except RayActorError:
                self._pool, taken = None, []
            if taken:  # a pooled agent that cannot take the identity is retired: go cold
                adopted = await adopt_pooled(taken[0], info, self.info.path)
                if adopted is not None:
                    return taken[0], adopted
        return await start_cold(info, self._recorder)

    async def fire(self, child_id: str) -> None:
        """Fire a child: its subtree and their desktops go too."""
        child = self.children.get(child_id)
        if child is None:
            raise NotFoundError(f"{self.info.path} has no child {child_id}")
        if child.handle is None:
            raise AgentError(f"{child.info.path} is still being hired; fire it once it is up")
        del self.children[child_id]
        try:
            await asyncio.wait_for(child.handle.shutdown.remote(), timeout=60)
        except (RayActorError, TimeoutError) as e:
            log.warning("child %s did not shut down cleanly: %s", child.info.path, e)
        ray.kill(child.handle, no_restart=True)
        await self._event(
            EventKind.MESSAGE,
            None,
            {"from": self.info.path, "to": child.info.path, "text": "fired"},
        )

    async def list_children(self) -> list[AgentInfo]:
        return [c.info for c in self.children.values()]

    async def tree(self) -> AgentTree:
        """This agent, its open tasks and its children's trees."""

        async def child_tree(c: _Child) -> AgentTree:
            if c.handle is None:  # still being hired
                return AgentTree(agent=c.info)
            try:
                t: AgentTree = await c.handle.tree.remote()
                return t
            except RayActorError:
                return AgentTree(
                    agent=c.info.model_copy(
                        update={"status": AgentStatus.FAILED, "error": "actor died"}
                    )
                )

        kids = await asyncio.gather(*(child_tree(c) for c in self.children.values()))
        tasks = self._tasks.open_tasks()
        return AgentTree(agent=self.info, tasks=tasks, children=list(kids))

    # ------------------------------------------------------------------ tasks (``_tasks``)

    async def assign(self, spec: TaskSpec, parent_task_id: str | None = None) -> TaskInfo:
        """Accept a task and start working on it; returns at once with the pending task
        (paused before its first step while a person holds the desktop's lease)."""
        task = await self._tasks.assign(spec, parent_task_id)
        await self.lease.adopt(task.id)
        return task

    async def wait_task(self, task_id: str, timeout_s: float | None = None) -> TaskInfo:
        """Wait until the task ends (or ``timeout_s`` passes) and return it."""
        return await self._tasks.wait(task_id, timeout_s)

    async def get_task(self, task_id: str) -> TaskInfo:
        return self._tasks.get(task_id)

    async def cancel_task(self, task_id: str, why: str | None = None) -> TaskInfo:
        """Cancel a task and, through it, every subtask in the subtree (``why``: the reason
        recorded with each end, an exceeded budget's say; default ``cancelled``)."""
        return await self._tasks.cancel(task_id, reason=why)

    async def answer(self, task_id: str, text: str) -> TaskInfo:
        """A person's answer to the question a task waits on (``input_required``)."""
        return await self._tasks.answer(task_id, text)

    async def approve(self, task_id: str, approved: bool, reason: str | None = None) -> TaskInfo:
        """A person approves (or refuses, ``reason``: why) the actions a task waits on."""
        return await self._tasks.approve(task_id, approved, reason)

    async def pause(self, task_id: str) -> TaskInfo:
        """Pause a task before its next step (``paused``); ``resume`` goes on."""
        return await self._tasks.pause(task_id)

    async def resume(self, task_id: str) -> TaskInfo:
        """Resume a paused task (``AgentError`` for one a person's lease paused: the lease's
        end resumes it)."""
        self.lease.check_resume(task_id)
        return await self._tasks.resume(task_id)

    # ------------------------------------------------------------------ the desktop, directly

    def _desk(self) -> Desktop:
        if self.desktop is None:
            raise AgentError(f"{self.info.path} has no desktop (status {self.info.status})")
        return self.desktop

    async def screenshot(self, format: Literal["png", "jpeg"] = "png", quality: int = 85) -> bytes:
        return (await self._desk().screenshot(format, quality=quality)).data

    async def act(self, action: a.Action, holder: str | None = None) -> a.ActionResult:
        """Carry out one action from outside (the API: ``holder``, the caller); refused
        (``AgentError``) while someone else holds the lease."""
        self.lease.check_input(holder)
        t0 = time.monotonic()
        result = await self._desk().act(action)
        await self._event(
            EventKind.STEP,
            None,
            {
                "action": action.model_dump(mode="json"),
                "result": result.model_dump(mode="json"),
                "direct": True,
                "ms": (time.monotonic() - t0) * 1000,
            },
        )
        return result

    async def shell(
        self,
        command: str,
        timeout_s: float = 60.0,
        user: Literal["agent", "root"] = "agent",
        holder: str | None = None,
    ) -> a.CommandResult:
        """Run a command from outside; refused while someone else holds the lease."""
        self.lease.check_input(holder)
        return await self._desk().run(command, timeout=timeout_s, user=user)

    async def live_view(self) -> LiveView:
        return await self._desk().live_view()

    async def read_path(
        self, path: str, user: Literal["agent", "root"] = "agent"
    ) -> tuple[bool, bytes]:
        """``(is_directory, data)``: a file's bytes, or a directory as a gzipped tarball."""
        return await read_path(self._desk(), path, user)

    async def write_file(
        self,
        path: str,
        data: bytes,
        user: Literal["agent", "root"] = "agent",
        holder: str | None = None,
    ) -> int:
        """Write ``data`` to the file ``path`` on the desktop; returns its size. Refused while
        someone other than ``holder`` (the caller) holds the desktop's lease."""
        self.lease.check_input(holder)
        return await write_file(self._desk(), path, data, user)
