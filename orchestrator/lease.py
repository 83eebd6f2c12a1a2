"""A person's lease on an agent's desktop: who has taken it over, until when (the rules;
pure, no Ray).

While a lease is held, the agent's running task is paused (the person-in-the-loop pause) and
only the holder's input reaches the desktop (the relay's ``may_input``, the API's actions and
shell). Handing back, or the lease running out, resumes the task. ``LeaseBook`` holds the
rules; the agent actor (``actors._lease.AgentLease``) pauses and resumes, and runs the expiry
timer.

Example:
    >>> book = LeaseBook("agent-1", clock=lambda: 100.0)
    >>> book.take("key:abc", ttl_s=60).expires_at
    160.0
    >>> book.holds("key:abc"), book.holds("session:def")
    (True, False)
    >>> book.hand_back("key:abc", "done").note
    'done'
    >>> book.current() is None
    True
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

from .domain import new_id
from .errors import AgentError

__all__ = ["DEFAULT_LEASE_TTL_S", "MAX_LEASE_TTL_S", "Lease", "LeaseBook", "hand_back_text"]

DEFAULT_LEASE_TTL_S = 900.0
"""How long a lease lasts unless renewed (15 min)."""
MAX_LEASE_TTL_S = 12 * 3600.0
"""The longest a lease may be taken (or renewed) for at once."""


class Lease(BaseModel):
    """A person's hold on an agent's desktop."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    """This lease (a renewal keeps it)."""
    agent_id: str
    holder: str
    """Who holds it: ``session:<id digest>`` (the console) or ``key:<key digest>`` (the API)."""
    task_id: str | None = None
    """The agent's task it paused, if one was running."""
    taken_at: float
    expires_at: float
    """When it hands back by itself, with no note (epoch seconds)."""
    note: str | None = Field(default=None, max_length=20_000)
    """The holder's note on handing back (None while held, or when it expired)."""
    holder_auth: dict[str, str | None] | None = Field(default=None, exclude=True)
    """What the API layer needs to ask whether the holder's credentials still hold (its
    principal: digests only, no secret); never shown (excluded from every dump). A lease
    whose holder signed out or whose key was revoked is ended when someone else takes over."""


class LeaseBook:
    """The lease of one agent: at most one holder at a time, renewable, expiring."""

    def __init__(self, agent_id: str, *, clock: Callable[[], float] = time.time) -> None:
        self.agent_id = agent_id
        self._clock = clock
        self._lease: Lease | None = None

    def current(self) -> Lease | None:
        """The lease in force (None when free or expired)."""
        lease = self._lease
        if lease is not None and lease.expires_at <= self._clock():
            return None
        return lease

    def holds(self, holder: str) -> bool:
        """Whether ``holder`` holds the lease now (the relay's and the API's input filter)."""
        lease = self.current()
        return lease is not None and lease.holder == holder

    def remaining(self) -> float | None:
        """Seconds until the lease kept runs out by this book's clock (<= 0: it has, but
        ``expire`` has not been called yet); None when there is none."""
        lease = self._lease
        return None if lease is None else lease.expires_at - self._clock()

    def take(
        self,
        holder: str,
        ttl_s: float = DEFAULT_LEASE_TTL_S,
        task_id: str | None = None,
        holder_auth: dict[str, str | None] | None = None,
    ) -> Lease:
        """Take the lease for ``ttl_s`` seconds; the holder taking it again renews it (same
        id and task). ``AgentError`` (409) while another holder's lease is in force."""
        if not holder:
            raise AgentError("a lease needs a holder")
        if not 0 < ttl_s <= MAX_LEASE_TTL_S:
            raise AgentError(f"a lease lasts more than 0 and at most {MAX_LEASE_TTL_S:g} s")
        now = self._clock()
        held = self.current()
        if held is not None and held.holder != holder:
            raise AgentError(
                f"agent {self.agent_id} is taken over by {held.holder} until {held.expires_at:.0f}"
            )
        if held is not None:
            update: dict[str, object] = {"expires_at": now + ttl_s}
            if holder_auth is not None:
                update["holder_auth"] = holder_auth
            renewed = held.model_copy(update=update)
        else:
            renewed = Lease(
                id=new_id("lease"),
                agent_id=self.agent_id,
                holder=holder,
                task_id=task_id,
                taken_at=now,
                expires_at=now + ttl_s,
                holder_auth=holder_auth,
            )
        self._lease = renewed
        return renewed

    def hand_back(self, holder: str, note: str | None = None) -> Lease:
        """End ``holder``'s lease with its note; returns the ended lease. ``AgentError``
        (409) when ``holder`` does not hold it."""
        held = self.current()
        if held is None or held.holder != holder:
            raise AgentError(f"{holder} does not hold the lease of agent {self.agent_id}")
        self._lease = None
        return held.model_copy(
            update={"note": note, "expires_at": min(held.expires_at, self._clock())}
        )

    def expire(self) -> Lease | None:
        """The lease that ran out, forgotten (None when there is none, or it has not run
        out): the expiry timer's call."""
        lease = self._lease
        if lease is None or lease.expires_at > self._clock():
            return None
        self._lease = None
        return lease

    def release(self, lease_id: str) -> Lease | None:
        """End the lease ``lease_id`` whoever holds it (its holder's credentials no longer
        hold); returns it, or None when it is not the one kept."""
        lease = self._lease
        if lease is None or lease.id != lease_id:
            return None
        self._lease = None
        return lease.model_copy(update={"expires_at": min(lease.expires_at, self._clock())})

    def with_task(self, task_id: str | None) -> Lease | None:
        """Note the task the lease paused (set once the pause was asked)."""
        if self._lease is not None:
            self._lease = self._lease.model_copy(update={"task_id": task_id})
        return self._lease


def hand_back_text(note: str | None) -> str:
    """What the agent's history says once a person handed its desktop back."""
    if note:
        return f"A person took over your desktop and handed it back: {note}"
    return "A person took over your desktop and handed it back (no note)."
