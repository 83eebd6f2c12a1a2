"""How a parent hires a child: warm from the pool, or cold with the child's desktop
started while Ray starts the child's process.

A cold hire has two slow starts that do not depend on each other: Ray starting a worker
process for the new actor (a Python process importing Ray and this package), and the
desktop container coming up (Xvfb, window manager, VNC, SSH). The parent starts the
container on its own node (``prepare_desktop``) while Ray starts the child there (a soft
node affinity: the parent's node when it has a free ``desktop`` unit, else any; with an
autoscaler, Ray's default placement, so that a child waiting for a node is demand), and the
child adopts the ready container (``adopt_desktop``) and connects to it. A child placed on
another host starts a desktop of its own and the prepared one is removed. Whatever fails,
the actor is killed and the prepared desktop removed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import ray
from ray.exceptions import RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from orchestrator.config import settings
from orchestrator.domain import AgentInfo, AgentStatus, Event, EventKind
from orchestrator.errors import CapacityError

if TYPE_CHECKING:
    from orchestrator.desktop import PreparedDesktop

__all__ = [
    "POOLED_SHUTDOWN_S",
    "WAITING_NOTICE_S",
    "adopt_pooled",
    "start_cold",
    "wait_placed",
]

log = logging.getLogger(__name__)

POOLED_SHUTDOWN_S = 30.0
"""How long a pooled agent that failed its adoption may take to stop before it is killed."""


WAITING_NOTICE_S = 1.0
"""How long a new agent waits to be placed before an event says it waits for a node."""


async def wait_placed(
    handle: Any, path: str, on_waiting: Callable[[str], Awaitable[None]] | None = None
) -> None:
    """Wait until Ray placed and constructed the actor ``handle`` (named ``path``).

    While it waits, the pending actor (one ``desktop`` unit) is the demand an autoscaler
    sees. ``on_waiting(text)`` is called once when it is not placed within
    ``WAITING_NOTICE_S`` (the agent stays ``starting``; an event tells why).
    ``CapacityError`` when no node had a free ``desktop`` unit for it within
    ``Settings.schedule_timeout_s()``: ``ORCHESTRATOR_AGENT_SCHEDULE_TIMEOUT_S``, or with an
    autoscaler (``ORCHESTRATOR_AUTOSCALE``) ``ORCHESTRATOR_AUTOSCALE_SCHEDULE_TIMEOUT_S``,
    which covers a node's start-up (the actor would wait for one without end).
    """
    conf = settings()
    limit = conf.schedule_timeout_s()
    info = asyncio.ensure_future(handle.get_info.remote())  # answers once placed and built
    try:
        done, _ = await asyncio.wait({info}, timeout=min(WAITING_NOTICE_S, limit))
        if not done and on_waiting is not None:
            text = "waiting for a node with a free desktop unit" + (
                " (the autoscaler adds one)" if conf.autoscale else ""
            )
            try:
                await on_waiting(text)
            except Exception as e:  # noqa: BLE001 - a lost notice must not fail the hire
                log.warning("could not record that %s waits for a node: %s", path, e)
        await asyncio.wait_for(asyncio.shield(info), timeout=max(0.0, limit - WAITING_NOTICE_S))
    except TimeoutError:
        more = (
            "the autoscaler added no node for it (at its maximum of workers, or nodes fail to "
            "start: see the head's monitor log)"
            if conf.autoscale
            else "every unit of the cluster's `desktop` resource is taken"
        )
        raise CapacityError(
            f"no node had a free desktop for {path} within {limit:g} s ({more}): fire idle "
            "agents or add nodes, then retry"
        ) from None
    finally:
        if not info.done():
            info.cancel()


async def adopt_pooled(handle: Any, info: AgentInfo, parent_path: str) -> AgentInfo | None:
    """Give a pooled agent the identity ``info``; None when it could not take it, after
    stopping it (its desktop removed) and killing it: the pool handed it out, so nobody
    else would."""
    try:
        adopted: AgentInfo = await handle.adopt.remote(info, parent_path)
        return adopted
    except Exception as e:  # noqa: BLE001 - the hire goes on cold; this one is retired
        log.warning("pooled agent for %s could not be adopted (%s): retiring it", info.path, e)
    try:
        await asyncio.wait_for(handle.shutdown.remote(), timeout=POOLED_SHUTDOWN_S)
    except (RayActorError, TimeoutError) as e:
        log.warning("pooled agent for %s did not stop cleanly: %s", info.path, e)
    ray.kill(handle, no_restart=True)
    return None


def _failed(info: AgentInfo, error: str) -> AgentInfo:
    return info.model_copy(update={"status": AgentStatus.FAILED, "error": error[:2000]})


async def start_cold(info: AgentInfo, recorder: Any) -> tuple[Any, AgentInfo]:
    """Start a new agent actor for ``info`` and its desktop at the same time; returns the
    actor and its info once the desktop is ready. Records the agent (``starting``, then
    as the child reports; ``failed`` with the reason when it never got to run)."""
    from orchestrator.desktop import discard_desktop, prepare_desktop

    from ._agent import AgentActor, agent_options, failed_agent

    options = agent_options(info.path, detached=False)
    if not settings().autoscale:
        # Not with an autoscaler: Ray's autoscaler does not count an actor with a node
        # affinity, even a soft one, as demand (a child waiting for a new node would wait
        # until the schedule timeout). Ray's default placement prefers the parent's node
        # (the local one) anyway while it has room.
        node = ray.get_runtime_context().get_node_id()
        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(
            node, soft=True, _spill_on_unavailable=True
        )
    handle = AgentActor.options(**options).remote(info)  # type: ignore[attr-defined]

    async def queued() -> None:
        said = Event(
            kind=EventKind.AGENT,
            agent_id=info.id,
            task_id=None,
            data={"desktop": "queued for a start slot"},
        )
        await recorder.append_event.remote(said)

    async def waiting(text: str) -> None:
        said = Event(kind=EventKind.AGENT, agent_id=info.id, task_id=None, data={"node": text})
        await recorder.append_event.remote(said)

    labels = {"orchestrator.agent": info.id, "orchestrator.path": info.path}
    prep = asyncio.create_task(prepare_desktop(info.spec.desktop, labels=labels, on_queued=queued))
    placed = asyncio.create_task(wait_placed(handle, info.path, waiting))
    try:
        await recorder.put_agent.remote(info)
        await asyncio.gather(placed, prep)  # the first failure raises at once
        started: AgentInfo = await handle.start.remote(prepared=prep.result())
    except BaseException as e:
        ray.kill(handle, no_restart=True)
        placed.cancel()
        await _drop(prep)
        if isinstance(e, CapacityError):  # the actor never ran: nobody else records it
            await recorder.put_agent.remote(failed_agent(info, e))
        elif prep.done() and not prep.cancelled() and prep.exception() is e:
            await recorder.put_agent.remote(_failed(info, f"desktop failed to start: {e}"))
        raise
    if not prep.result().adopted:  # the child runs on another host: it started its own
        await discard_desktop(prep.result())
    return handle, started


async def _drop(prep: asyncio.Task[PreparedDesktop]) -> None:
    """Stop preparing, or remove what was prepared (a preparation that failed or was
    cancelled removed what it had started itself)."""
    from orchestrator.desktop import PreparedDesktop, discard_desktop

    prep.cancel()
    [prepared] = await asyncio.gather(prep, return_exceptions=True)
    if isinstance(prepared, PreparedDesktop):
        await discard_desktop(prepared)
