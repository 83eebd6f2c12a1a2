"""Ray's errors in our terms (the one place that translates them), and the typed reference to
a running agent actor that the HTTP layer talks to (``orchestrator.front.AgentRef``)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Literal, TypeVar

from ray.exceptions import (
    ActorDiedError,
    GetTimeoutError,
    RayActorError,
    RayError,
    RayTaskError,
)

from orchestrator import actions as a
from orchestrator.domain import AgentInfo, AgentSpec, AgentTree, TaskInfo
from orchestrator.errors import AgentGoneError, UnavailableError
from orchestrator.front import ViewMode
from orchestrator.lease import Lease

from ._vnc import RelayOpened
from ._vnc_relay import RayVncRelay

__all__ = ["RayAgentRef", "ours", "ray_call"]

T = TypeVar("T")

User = Literal["agent", "root"]


def _cause(exc: BaseException) -> BaseException:
    """The exception raised inside an actor, behind Ray's wrappers (one per actor it passed
    through: the recorder's error, re-raised by an agent, is wrapped twice)."""
    while isinstance(exc, RayTaskError):
        cause = getattr(exc, "cause", None)
        if not isinstance(cause, BaseException) or cause is exc:
            break
        exc = cause
    return exc


def ours(exc: BaseException) -> BaseException:
    """``exc`` in the runtime's terms: the error an actor raised (our ``OrchestratorError``,
    or a desktop's ``OSError``/``ValueError`` on a file), ``AgentGoneError`` for a dead
    actor, ``UnavailableError`` for an actor or a cluster that does not answer. Anything
    else (a bug) is returned as it is."""
    cause = _cause(exc)
    if isinstance(cause, ActorDiedError):
        return AgentGoneError("the agent's actor has died")
    if isinstance(cause, RayActorError):
        return UnavailableError("the agent's actor is unavailable")
    if isinstance(cause, GetTimeoutError):
        return UnavailableError("the Ray cluster did not answer in time")
    if isinstance(cause, RayError):
        return UnavailableError("the Ray cluster is unavailable")
    return cause  # ours (OrchestratorError, a desktop's OSError or ValueError), or a bug


async def ray_call(call: Awaitable[T]) -> T:
    """Await an actor call; Ray's errors raised as ours (see ``ours``)."""
    try:
        return await call
    except RayError as e:
        translated = ours(e)
        if translated is e:
            raise
        raise translated from None


class RayAgentRef:
    """A running agent actor with typed methods (``orchestrator.front.AgentRef`` on Ray).

    Example:
        >>> ref = await runtime.agent_ref(agent_id, tenant)         # doctest: +SKIP
        >>> png = await ref.screenshot("png", 85)                     # doctest: +SKIP
    """

    def __init__(self, info: AgentInfo, handle: Any) -> None:
        self._info = info
        self.handle = handle
        """The actor's Ray handle (for the runtime itself; fronts use the methods)."""

    @property
    def info(self) -> AgentInfo:
        return self._info

    async def tree(self) -> AgentTree:
        tree: AgentTree = await ray_call(self.handle.tree.remote())
        return tree

    async def hire(self, spec: AgentSpec) -> AgentInfo:
        info: AgentInfo = await ray_call(self.handle.hire.remote(spec))
        return info

    async def fire(self, child_id: str) -> None:
        """Fire one of this agent's children (its subtree goes too)."""
        await ray_call(self.handle.fire.remote(child_id))

    async def assign(self, spec: Any) -> TaskInfo:
        task: TaskInfo = await ray_call(self.handle.assign.remote(spec))
        return task

    async def wait_task(self, task_id: str, timeout_s: float | None = None) -> TaskInfo:
        task: TaskInfo = await ray_call(self.handle.wait_task.remote(task_id, timeout_s))
        return task

    async def cancel_task(self, task_id: str) -> TaskInfo:
        task: TaskInfo = await ray_call(self.handle.cancel_task.remote(task_id))
        return task

    async def answer(self, task_id: str, text: str) -> TaskInfo:
        """A person's answer to the question the task waits on."""
        task: TaskInfo = await ray_call(self.handle.answer.remote(task_id, text))
        return task

    async def approve(self, task_id: str, approved: bool, reason: str | None = None) -> TaskInfo:
        """A person approves (or refuses, ``reason``: why) the actions the task waits on."""
        task: TaskInfo = await ray_call(self.handle.approve.remote(task_id, approved, reason))
        return task

    async def pause_task(self, task_id: str) -> TaskInfo:
        """Pause the task before its next step."""
        task: TaskInfo = await ray_call(self.handle.pause.remote(task_id))
        return task

    async def resume_task(self, task_id: str) -> TaskInfo:
        """Resume the paused task (or withdraw a pause not taken yet)."""
        task: TaskInfo = await ray_call(self.handle.resume.remote(task_id))
        return task

    async def screenshot(self, format: Literal["png", "jpeg"], quality: int) -> bytes:
        data: bytes = await ray_call(self.handle.screenshot.remote(format, quality))
        return data

    async def act(self, action: a.Action, holder: str | None = None) -> a.ActionResult:
        result: a.ActionResult = await ray_call(self.handle.act.remote(action, holder))
        return result

    async def shell(
        self, command: str, timeout_s: float, user: User, holder: str | None = None
    ) -> a.CommandResult:
        result: a.CommandResult = await ray_call(
            self.handle.shell.remote(command, timeout_s, user, holder)
        )
        return result

    async def take_lease(
        self, holder: str, ttl_s: float, holder_auth: dict[str, str | None] | None = None
    ) -> Lease:
        """Take the desktop over (or renew): the running task pauses."""
        lease: Lease = await ray_call(self.handle.take_lease.remote(holder, ttl_s, holder_auth))
        return lease

    async def release_lease(self, lease_id: str, reason: str) -> Lease | None:
        """End the lease ``lease_id`` whoever holds it: the paused tasks resume."""
        lease: Lease | None = await ray_call(self.handle.release_lease.remote(lease_id, reason))
        return lease

    async def hand_back(self, holder: str, note: str | None) -> Lease:
        """Hand the desktop back: the task resumes with the note in its history."""
        lease: Lease = await ray_call(self.handle.hand_back_lease.remote(holder, note))
        return lease

    async def lease(self) -> Lease | None:
        """The lease in force, or None."""
        lease: Lease | None = await ray_call(self.handle.current_lease.remote())
        return lease

    async def live_view(self) -> str:
        view = await ray_call(self.handle.live_view.remote())
        return str(view.url)

    async def vnc_relay(self, mode: ViewMode, holder: str) -> RayVncRelay:
        """Open a live RFB stream of the desktop through the agent's actor (``_vnc``) for a
        viewer whose handshake the caller answered (``ViewerHandshake``)."""
        opened: RelayOpened = await ray_call(self.handle.vnc_open.remote(mode, holder))
        return RayVncRelay(self.handle, opened.sid, opened.server_init)

    async def read_path(self, path: str, user: User) -> tuple[bool, bytes]:
        found: tuple[bool, bytes] = await ray_call(self.handle.read_path.remote(path, user))
        return found

    async def write_file(
        self, path: str, data: bytes, user: User, holder: str | None = None
    ) -> int:
        size: int = await ray_call(self.handle.write_file.remote(path, data, user, holder))
        return size

    async def reset_desktop(self, holder: str | None = None) -> AgentInfo:
        info: AgentInfo = await ray_call(self.handle.reset_desktop.remote(holder))
        return info
