"""Routes of an agent's desktop, directly: screenshot, actions, shell, live view, reset."""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations.
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Query, Response

from orchestrator import actions as a
from orchestrator.domain import AgentInfo

from ._front import Caller, Rt, Tenant
from ._models import LiveViewLink, ShellRequest

__all__ = ["router"]

router = APIRouter(prefix="/v1/agents/{agent_id}", tags=["desktop"])


@router.get(
    "/screenshot",
    response_class=Response,
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}},
)
async def screenshot(
    rt: Rt,
    tenant: Tenant,
    agent_id: str,
    format: Literal["png", "jpeg"] = "png",
    quality: Annotated[int, Query(ge=1, le=100)] = 85,
) -> Response:
    data = await (await rt.agent_ref(agent_id, tenant)).screenshot(format, quality)
    return Response(content=data, media_type=f"image/{format}")


@router.post("/actions")
async def act(
    rt: Rt, caller: Caller, agent_id: str, action: Annotated[a.Action, Body()]
) -> a.ActionResult:
    """Carry out one action; a failed action is ``ok: false`` with its reason (200). 409
    while a person other than the caller holds the desktop's lease."""
    return await (await rt.agent_ref(agent_id, caller.tenant)).act(action, caller.holder)


@router.post("/shell")
async def shell(rt: Rt, caller: Caller, agent_id: str, req: ShellRequest) -> a.CommandResult:
    """Run a command on the desktop; a failing command is a result, not an error. 409 while
    a person other than the caller holds the desktop's lease."""
    ref = await rt.agent_ref(agent_id, caller.tenant)
    return await ref.shell(req.command, req.timeout_s, req.user, caller.holder)


@router.get("/live-view")
async def live_view(rt: Rt, tenant: Tenant, agent_id: str, response: Response) -> LiveViewLink:
    """A noVNC link on 127.0.0.1 to watch the desktop; it holds the VNC password."""
    url = await (await rt.agent_ref(agent_id, tenant)).live_view()
    response.headers["Cache-Control"] = "no-store"
    return LiveViewLink(url=url, expires=None)


@router.post("/desktop/reset")
async def reset_desktop(rt: Rt, caller: Caller, agent_id: str) -> AgentInfo:
    """Replace the agent's desktop with a new one of its spec: a new container and socket
    directory, nothing of the old desktop kept (for one broken from inside, e.g. its
    ``/etc/passwd`` overwritten). 409 while a task of the agent runs: cancel it first, and
    while someone else holds the desktop's lease."""
    return await (await rt.agent_ref(agent_id, caller.tenant)).reset_desktop(caller.holder)
