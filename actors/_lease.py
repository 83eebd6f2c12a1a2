"""The agent actor's side of a person's lease (``orchestrator.lease``): pause the agent's
tasks while a person holds its desktop, resume them (the note in their history) on hand-back
or when the lease runs out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from orchestrator.domain import EventKind, TaskInfo, TaskState
from orchestrator.errors import AgentError
from orchestrator.lease import DEFAULT_LEASE_TTL_S, Lease, LeaseBook, hand_back_text

__all__ = ["DEFAULT_LEASE_TTL_S", "AgentLease", "Lease", "LeaseBook", "LeasePart"]

log = logging.getLogger(__name__)


class TaskControl(Protocol):
    """The agent's tasks, as a lease pauses and resumes them (``AgentTasks``)."""

    def open_tasks(self) -> list[TaskInfo]: ...

    async def pause(self, task_id: str, by: str | None = None) -> TaskInfo: ...

    async def resume(self, task_id: str, note: str | None = None) -> TaskInfo: ...


Say = Callable[[str | None, dict[str, Any]], Awaitable[None]]
"""Records an ``agent`` event (task id or None, data) on the agent's timeline."""


class AgentLease:
    """An agent actor's lease: the book, the pause of its tasks while held, the resume on
    hand-back or expiry (a timer at the lease's end, re-armed on renewal).

    Example (inside the agent actor)::

        self.lease = AgentLease(info.id, self._tasks, say)
        await self.lease.take("key:abc", 900)             # its running task pauses
        self.lease.holds("key:abc")                        # True: the relay's input filter
        await self.lease.hand_back("key:abc", "fixed it")  # the task resumes with the note
    """

    def __init__(
        self, agent_id: str, tasks: TaskControl, say: Say, book: LeaseBook | None = None
    ) -> None:
        self.book = book or LeaseBook(agent_id)
        self._tasks = tasks
        self._say = say
        self._paused: list[str] = []
        """The tasks this lease paused (resumed when it ends)."""
        self._timer: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def holds(self, holder: str) -> bool:
        """Whether ``holder`` holds the lease now."""
        return self.book.holds(holder)

    def current(self) -> Lease | None:
        return self.book.current()

    def check_input(self, holder: str | None) -> None:
        """``AgentError`` (409) when someone other than ``holder`` holds the lease: only the
        holder's input reaches the desktop through the API while it is held."""
        lease = self.book.current()
        if lease is not None and lease.holder != holder:
            raise AgentError(
                f"agent {self.book.agent_id} is taken over by {lease.holder}: only the lease "
                "holder's input reaches its desktop"
            )

    def check_resume(self, task_id: str) -> None:
        """``AgentError`` (409) when ``task_id`` is one the lease in force paused: only the
        lease's end (hand-back, expiry, release) resumes it, not someone else's resume."""
        lease = self.book.current()
        if lease is not None and task_id in self._paused:
            raise AgentError(
                f"task {task_id} is paused while {lease.holder} has taken over agent "
                f"{self.book.agent_id}: it resumes when the desktop is handed back"
            )

    async def take(
        self,
        holder: str,
        ttl_s: float = DEFAULT_LEASE_TTL_S,
        holder_auth: dict[str, str | None] | None = None,
    ) -> Lease:
        """Take (or renew) the lease; a new one pauses every open task of the agent.
        ``holder_auth``: what the API needs to tell later whether the holder still holds."""
        async with self._lock:
            fresh = self.book.current() is None
            lease = self.book.take(holder, ttl_s, holder_auth=holder_auth)
            if fresh:
                first = await self._pause_all(f"taken over by {holder}")
                lease = self.book.with_task(first) or lease
                said = {"lease": "taken", "holder": holder, "expires_at": lease.expires_at}
                await self._say(first, said)
            self._arm(lease.expires_at)
            return lease

    async def hand_back(self, holder: str, note: str | None = None) -> Lease:
        """Hand back (``AgentError`` unless ``holder`` holds it): the paused tasks resume
        with the note in their history."""
        async with self._lock:
            lease = self.book.hand_back(holder, note)
            self._disarm()
            await self._end(lease, note, "handed back")
            return lease

    async def expire(self) -> Lease | None:
        """End a lease that ran out (no note); None when there is none."""
        async with self._lock:
            lease = self.book.expire()
            if lease is not None:
                await self._end(lease, None, "expired")
            return lease

    async def release(self, lease_id: str, reason: str) -> Lease | None:
        """End the lease ``lease_id`` whoever holds it (e.g. its holder signed out): the
        paused tasks resume (no note). None when it is no longer the lease in force."""
        async with self._lock:
            lease = self.book.release(lease_id)
            if lease is None:
                return None
            self._disarm()
            await self._end(lease, None, reason)
            return lease

    async def adopt(self, task_id: str) -> None:
        """A task given to the agent while the lease is held starts paused (and resumes with
        the others on hand-back)."""
        async with self._lock:
            lease = self.book.current()
            if lease is None:
                return
            try:
                await self._tasks.pause(task_id, f"taken over by {lease.holder}")
            except AgentError as e:
                log.info("lease: new task %s not paused: %s", task_id, e)
                return
            self._paused.append(task_id)

    async def close(self) -> None:
        """Stop the expiry timer (the agent is stopping)."""
        self._disarm()

    async def _pause_all(self, by: str) -> str | None:
        self._paused = []
        for task in self._tasks.open_tasks():
            if task.state in (TaskState.PAUSED,):  # a person paused it already: theirs
                continue
            try:
                await self._tasks.pause(task.id, by)
            except AgentError as e:  # ended meanwhile
                log.info("lease: task %s not paused: %s", task.id, e)
                continue
            self._paused.append(task.id)
        return self._paused[0] if self._paused else None

    async def _end(self, lease: Lease, note: str | None, how: str) -> None:
        paused, self._paused = self._paused, []
        text = hand_back_text(note)
        for task_id in paused:
            try:
                await self._tasks.resume(task_id, text)
            except AgentError as e:  # ended, or resumed by a person meanwhile
                log.info("lease: task %s not resumed: %s", task_id, e)
        said: dict[str, Any] = {"lease": how, "holder": lease.holder}
        if note is not None:
            said["note"] = note
        await self._say(lease.task_id, said)

    def _arm(self, when: float) -> None:
        self._disarm()
        self._timer = asyncio.create_task(self._expire_at(when))

    def _disarm(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()

    async def _expire_at(self, when: float) -> None:
        """Wait for the lease's end (a deadline: the point of the wait), then end it. The
        wait is measured by the book's own clock and taken again until the book agrees the
        lease ran out (an early wake, or a clock behind the loop's), so the paused tasks
        always resume; a renewal re-arms a new timer, a hand-back disarms it."""
        del when  # the book's lease says when: a renewal replaced this timer
        while (left := self.book.remaining()) is not None:
            if left > 0:
                await asyncio.sleep(left)
                continue
            try:
                ended = await self.expire()
            except Exception:  # the timer must not die silently: say why the tasks stay paused
                log.exception("the lease of %s could not be ended on expiry", self.book.agent_id)
                return
            if ended is not None:
                log.info("lease %s of %s expired", ended.id, ended.agent_id)
                return


class LeasePart:
    """The lease's methods of the agent actor (``AgentActor`` mixes this in; it sets
    ``lease`` and records events with ``_event``)."""

    lease: AgentLease

    if TYPE_CHECKING:

        async def _event(
            self, kind: EventKind, task_id: str | None, data: dict[str, Any]
        ) -> None: ...

    async def take_lease(
        self,
        holder: str,
        ttl_s: float = DEFAULT_LEASE_TTL_S,
        holder_auth: dict[str, str | None] | None = None,
    ) -> Lease:
        """A person takes the desktop over (or renews): the running task pauses; 409
        (``AgentError``) while another holder's lease is in force."""
        return await self.lease.take(holder, ttl_s, holder_auth)

    async def release_lease(self, lease_id: str, reason: str) -> Lease | None:
        """End the lease ``lease_id`` whoever holds it (its holder signed out, or its key
        was revoked): the paused tasks resume. None when it is no longer in force."""
        return await self.lease.release(lease_id, reason)

    async def hand_back_lease(self, holder: str, note: str | None = None) -> Lease:
        """The holder hands the desktop back: the task resumes with the note in its history."""
        return await self.lease.hand_back(holder, note)

    async def current_lease(self) -> Lease | None:
        """The lease in force, or None."""
        return self.lease.current()

    async def _lease_event(self, task_id: str | None, data: dict[str, Any]) -> None:
        """A lease's change on the agent's timeline (an ``agent`` event)."""
        await self._event(EventKind.AGENT, task_id, data)
