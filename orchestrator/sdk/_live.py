"""Stepping in and watching from a notebook: the lease calls (take over, hand back), the
embed ticket, and the objects Jupyter shows inline (``LiveViewUrl``, ``TaskDisplay``).

``agent.live_view()`` returns a ``LiveViewUrl``: the noVNC link as before (a ``str``), whose
``_repr_html_`` is an ``<iframe>`` of the console's embed page for the agent, with a
view-only ticket minted with the SDK's key (``POST /v1/agents/{id}/tickets``, mode
``embed``, valid 15 min to open). The page works from any site: the iframe loads the API's
own origin, and the ticket, not a cookie, authorizes it.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import BaseModel, ConfigDict

from ..domain import TaskInfo
from ..lease import Lease
from ._http import Call

__all__ = ["EmbedTicket", "LiveViewUrl", "TaskDisplay", "embed_html", "embed_url", "live_calls"]

IFRAME_WIDTH = 1024
IFRAME_HEIGHT = 640


class EmbedTicket(BaseModel):
    """A short-lived view-only ticket for the console's embed page of one agent."""

    model_config = ConfigDict(extra="ignore")

    ticket: str
    mode: str
    expires_at: float
    embed_path: str | None = None
    """``/console/embed/<agent id>?ticket=...``: the page that shows the desktop live."""


def _lease(r: httpx.Response) -> Lease:
    return Lease.model_validate_json(r.content)


def _maybe_lease(r: httpx.Response) -> Lease | None:
    data = r.json()
    return None if data is None else Lease.model_validate(data)


class live_calls:  # noqa: N801 - a namespace of call builders, like ``calls``
    """Builders of the lease and embed-ticket calls of an agent."""

    @staticmethod
    def lease(agent_id: str) -> Call[Lease | None]:
        return Call("GET", f"/v1/agents/{agent_id}/lease", _maybe_lease)

    @staticmethod
    def take_over(agent_id: str, ttl_s: float) -> Call[Lease]:
        return Call("POST", f"/v1/agents/{agent_id}/lease", _lease, body={"ttl_s": ttl_s})

    @staticmethod
    def hand_back(agent_id: str, note: str | None) -> Call[Lease]:
        path = f"/v1/agents/{agent_id}/lease/hand-back"
        return Call("POST", path, _lease, body={"note": note})

    @staticmethod
    def embed_ticket(agent_id: str) -> Call[EmbedTicket]:
        path = f"/v1/agents/{agent_id}/tickets"
        read: Callable[[httpx.Response], EmbedTicket] = lambda r: EmbedTicket.model_validate_json(  # noqa: E731
            r.content
        )
        return Call("POST", path, read, body={"mode": "embed"})


def embed_url(api_url: str, agent_id: str, ticket: EmbedTicket) -> str:
    """The embed page's full URL on the API."""
    path = ticket.embed_path or f"/console/embed/{agent_id}?ticket={ticket.ticket}"
    return api_url.rstrip("/") + path


def embed_html(src: str, title: str) -> str:
    """An ``<iframe>`` of the embed page (escaped). It is granted nothing (no ``allow``
    list): the view-only page needs neither the clipboard nor any other feature."""
    return (
        f'<iframe src="{html.escape(src, quote=True)}" title="{html.escape(title, quote=True)}"'
        f' width="{IFRAME_WIDTH}" height="{IFRAME_HEIGHT}" style="border:0"></iframe>'
    )


def without_query(url: str) -> str:
    """``url`` with no query or fragment (the noVNC link's query holds the VNC password).

    Example:
        >>> without_query("http://127.0.0.1:6080/vnc.html?password=s3cret#x")
        'http://127.0.0.1:6080/vnc.html'
    """
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


class LiveViewUrl(str):
    """The live-view link (a ``str``, as ``live_view()`` always returned) that Jupyter shows
    inline: the console's embed page of the agent, with a fresh view-only ticket.

    ``embed``: mints the ticket and returns the page's URL (called when shown; a failure to
    mint, e.g. an API without the console, shows where the link goes, without its query: the
    query holds the desktop's VNC password, and the shown HTML is saved in the notebook).
    """

    embed: Callable[[], str] | None
    agent_id: str

    def __new__(
        cls, url: str, agent_id: str = "", embed: Callable[[], str] | None = None
    ) -> LiveViewUrl:
        made = super().__new__(cls, url)
        made.embed = embed
        made.agent_id = agent_id
        return made

    def embed_url(self) -> str | None:
        """The embed page's URL with a fresh ticket (None when it cannot be minted)."""
        if self.embed is None:
            return None
        try:
            return self.embed()
        except Exception:  # noqa: BLE001 - shown as the plain link instead
            return None

    def _repr_html_(self) -> str:
        src = self.embed_url()
        if src is None:
            where = html.escape(without_query(str(self)))
            return (
                f"<div>live view of {html.escape(self.agent_id)}: the embed page could not be"
                f" opened; the desktop's noVNC page is at {where} (the full link is this"
                " object's value)</div>"
            )
        return embed_html(src, f"live desktop of {self.agent_id}")


class TaskDisplay:
    """A task shown inline: its state (and result or error) above its agent's live desktop."""

    def __init__(self, task: TaskInfo, embed_src: str | None) -> None:
        self.task = task
        self.embed_src = embed_src

    def __repr__(self) -> str:
        return f"<Task {self.task.id} {self.task.state.value}>"

    def status_line(self) -> str:
        t = self.task
        said = t.result if t.state.value == "succeeded" else t.error
        tail = f": {said}" if said else ""
        return f"task {t.id} ({t.spec.description[:80]}) is {t.state.value}{tail}"

    def _repr_html_(self) -> str:
        line = f"<div><b>{html.escape(self.status_line()[:2000])}</b></div>"
        if self.embed_src is None:
            return line
        return line + embed_html(self.embed_src, f"desktop of task {self.task.id}")
