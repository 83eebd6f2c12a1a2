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
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import ray
from ray.exceptions import RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from orchestrator.config import ray_env, settings
from orchestrator.domain import AgentInfo, AgentStatus, Event, EventKind
from orchestrator.errors import CapacityError

if TYPE_CHECKING:
    from orchestrator.desktop import PreparedDesktop

__all__ = [
    "POOLED_SHUTDOWN_S",
    "WAITING_NOTICE_S",
    "adopt_pooled",
    "start_cold",
    "unplaced",
    "wait_placed",
]

log = logging.getLogger(__name__)

POOLED_SHUTDOWN_S = 30.0
"""How long a pooled agent that failed its adoption may take to stop before it is killed."""


WAITING_NOTICE_S = 1.0
"""How often a new agent's placement is looked at while it starts (the first look after
this long: most agents are placed by then)."""

NOTICE_WAIT_S = 5.0
"""How long a hire that went on waits for its "waiting for a node" notice to be recorded
(never past the schedule timeout)."""

UNPLACED_LOOKS = 2
"""Looks in a row (``WAITING_NOTICE_S`` apart) that must find an agent unplaced before the
notice: a worker starting on a node whose last unit it took reads unplaced for a moment."""

_WAITING_STATES = frozenset({"DEPENDENCIES_UNREADY", "PENDING_CREATION"})


def unplaced(handle: Any) -> bool:
    """Whether the actor ``handle`` waits for a node with a free ``desktop`` unit (the
    demand an autoscaler sees), as Ray's state says: not created yet, no worker leased to it
    (``Address.Port`` 0, no pid), and the raylet its request queues at (``Address.NodeID``,
    nil before one) has no free unit. A request on a node with free units gets a worker
    there; that worker's start (1-2 s) reads False. Only while the actor's worker starts on
    a node whose last unit it took does it read True too (``wait_placed`` looks twice).
    False when the state cannot be read. Blocking (control-plane calls)."""
    from ray._private import state

    from ._capacity import free_desktops

    try:
        entry: Any = state.actors(handle._actor_id.hex())
        if not isinstance(entry, dict) or entry.get("State") not in _WAITING_STATES:
            return False
        address = entry.get("Address") or {}
        if address.get("Port") or entry.get("Pid"):
            return False  # a worker is leased to it: placed
        node = str(address.get("NodeID") or "")
        if not node.strip("f"):
            return True  # not forwarded to any raylet yet
        return free_desktops(node) < 1
    except Exception as e:  # noqa: BLE001 - unknown counts as placed: no false notice
        log.info("actor %s: state unreadable: %s", handle, e)
        return False


async def wait_placed(
    handle: Any, path: str, on_waiting: Callable[[str], Awaitable[None]] | None = None
) -> None:
    """Wait until Ray placed and constructed the actor ``handle`` (named ``path``).

    While it waits, the pending actor (one ``desktop`` unit) is the demand an autoscaler
    sees. ``on_waiting(text)`` is called once when Ray says the actor is not placed on a node
    (``unplaced``) at ``UNPLACED_LOOKS`` looks in a row, ``WAITING_NOTICE_S`` apart (a slow
    worker start on a node with a free unit says nothing): the agent stays ``starting``, an
    event tells why.
    ``CapacityError`` when it was not built within ``Settings.schedule_timeout_s()`` (one
    deadline, the notice's recording included): ``ORCHESTRATOR_AGENT_SCHEDULE_TIMEOUT_S``,
    or with an autoscaler (``ORCHESTRATOR_AUTOSCALE``)
    ``ORCHESTRATOR_AUTOSCALE_SCHEDULE_TIMEOUT_S``, which covers a node's start-up (the actor
    would wait for one without end).
    """
    conf = settings()
    limit = conf.schedule_timeout_s()
    deadline = time.monotonic() + limit
    info = asyncio.ensure_future(handle.get_info.remote())  # answers once placed and built
    notice: asyncio.Task[None] | None = None
    looks = 0  # looks in a row that found it unplaced
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            done, _ = await asyncio.wait({info}, timeout=min(WAITING_NOTICE_S, left))
            if done:
                info.result()
                return
            if notice is not None or on_waiting is None:
                continue
            looks = looks + 1 if await asyncio.to_thread(unplaced, handle) else 0
            if looks >= UNPLACED_LOOKS:
                text = "waiting for a node with a free desktop unit" + (
                    " (the autoscaler adds one)" if conf.autoscale else ""
                )
                notice = asyncio.create_task(_notify(on_waiting, text, path))
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
        if notice is not None:
            left = max(0.0, min(NOTICE_WAIT_S, deadline - time.monotonic()))
            await asyncio.wait({notice}, timeout=left)
            notice.cancel()


async def _notify(on_waiting: Callable[[str], Awaitable[None]], text: str, path: str) -> None:
    try:
        await on_waiting(text)
    except Exception as e:  # noqa: BLE001 - a lost notice must not fail the hire
        log.warning("could not record that %s waits for a node: %s", path, e)


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
    prepare = await asyncio.to_thread(_prepare_here)  # before the child takes a unit
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

    async def desktop() -> PreparedDesktop | None:
        if not prepare:
            return None  # the child starts its own
        return await prepare_desktop(info.spec.desktop, labels=labels, on_queued=queued)

    prep = asyncio.create_task(desktop())
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
    prepared = prep.result()
    if prepared is not None and not prepared.adopted:  # the child runs on another host
        await discard_desktop(prepared)  # it started its own
    return handle, started


def _prepare_here() -> bool:
    """Whether a parent starts its child's desktop on its own node while Ray starts the
    child: always without an autoscaler (the child prefers this node while it has room); with
    one, when this node has a free ``desktop`` unit now, or when the autoscaler's nodes run
    on this machine (the fake provider, ``RAY_FAKE_CLUSTER``: a child on one adopts it
    there). Otherwise the child may wait minutes for a new node on another host, and a
    desktop started here meanwhile would take memory no unit accounts for."""
    if not settings().autoscale or ray_env().fake_cluster:
        return True
    from ._capacity import free_desktops

    try:
        return free_desktops(ray.get_runtime_context().get_node_id()) >= 1
    except Exception as e:  # noqa: BLE001 - unknown: the child starts its own desktop
        log.info("free desktop units unreadable: %s", e)
        return False


async def _drop(prep: asyncio.Task[PreparedDesktop | None]) -> None:
    """Stop preparing, or remove what was prepared (a preparation that failed or was
    cancelled removed what it had started itself)."""
    from orchestrator.desktop import PreparedDesktop, discard_desktop

    prep.cancel()
    [prepared] = await asyncio.gather(prep, return_exceptions=True)
    if isinstance(prepared, PreparedDesktop):
        await discard_desktop(prepared)
