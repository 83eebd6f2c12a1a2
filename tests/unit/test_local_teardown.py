"""``down``'s teardown fires every live top-level agent, however many pages of them the
records hold (``orchestrator._local_ray.fire_live_agents``), on a real record store with a
small page instead of 10,000 agents."""

from __future__ import annotations

import asyncio

from orchestrator._local_ray import LIVE, fire_live_agents
from orchestrator.domain import AgentInfo, AgentSpec, AgentStatus, new_id
from orchestrator.records import SQLiteStore


def _agent(store: SQLiteStore, status: AgentStatus, parent: AgentInfo | None = None) -> AgentInfo:
    name = f"a{len(store.list_agents())}"
    info = AgentInfo(
        id=new_id("agent"),
        path=f"{parent.path if parent else 'acme'}/{name}",
        tenant="acme",
        parent_id=parent.id if parent else None,
        spec=AgentSpec(name=name),
        status=status,
    )
    store.put_agent(info)
    return info


def _teardown(store: SQLiteStore, page: int, failing: frozenset[str] = frozenset()) -> list[str]:
    """Run the teardown against ``store``; the ids it fired, in order. Firing an agent stops
    it in the records (as ``Runtime.fire`` does), except the ``failing`` ones."""
    fired: list[str] = []

    async def list_live(limit: int) -> list[AgentInfo]:
        return store.list_agents(top_level=True, status=LIVE, limit=limit)

    async def fire(agent_id: str) -> None:
        fired.append(agent_id)
        info = store.get_agent(agent_id)
        if info is not None and agent_id not in failing:
            store.put_agent(info.model_copy(update={"status": AgentStatus.STOPPED}))

    tried = asyncio.run(fire_live_agents(list_live, fire, page=page))
    assert tried == len(fired)
    return fired


def test_every_live_agent_is_fired_past_the_first_page(store: SQLiteStore) -> None:
    for _ in range(4):  # older agents, already gone: a list of everything starts with them
        _agent(store, AgentStatus.STOPPED)
    live = [_agent(store, AgentStatus.IDLE) for _ in range(5)]
    live.append(_agent(store, AgentStatus.STARTING))
    live.append(_agent(store, AgentStatus.BUSY))
    _agent(store, AgentStatus.IDLE, parent=live[0])  # a child goes with its top-level agent

    fired = _teardown(store, page=3)

    assert sorted(fired) == sorted(a.id for a in live)
    assert store.list_agents(top_level=True, status=LIVE) == []


def test_agents_that_cannot_be_fired_do_not_hide_the_others(store: SQLiteStore) -> None:
    live = [_agent(store, AgentStatus.IDLE) for _ in range(7)]
    failing = frozenset(a.id for a in live[:3])  # more than a page of them, and the oldest

    fired = _teardown(store, page=2, failing=failing)

    assert sorted(fired) == sorted(a.id for a in live)  # each one tried, once
    left = store.list_agents(top_level=True, status=LIVE)
    assert {a.id for a in left} == failing
