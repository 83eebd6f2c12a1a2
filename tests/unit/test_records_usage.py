"""Usage rolled up in the records: a task's own spend (model calls from its ``model`` events,
steps from its ``step`` events, running time from its ``task`` events), its subtree's (all
subtasks, recursively), an agent's and its subtree of agents'; never stored in a payload."""

from __future__ import annotations

import pytest

from orchestrator.domain import (
    AgentInfo,
    AgentSpec,
    Event,
    EventKind,
    TaskInfo,
    TaskSpec,
    TaskState,
)
from orchestrator.records import SQLiteStore
from orchestrator.usage import Usage, parse_prices

PRICES = parse_prices('{"gpt-4o*": {"input": 2.5, "output": 10}}')


def agent(store: SQLiteStore, aid: str, parent: str | None = None) -> None:
    store.put_agent(
        AgentInfo(id=aid, path=f"t/{aid}", tenant="t", parent_id=parent, spec=AgentSpec(name=aid))
    )


def task(store: SQLiteStore, tid: str, aid: str, parent: str | None = None) -> TaskInfo:
    info = TaskInfo(id=tid, agent_id=aid, parent_task_id=parent, spec=TaskSpec(description=tid))
    said = Event(kind=EventKind.TASK, agent_id=aid, task_id=tid, data={"state": "pending"})
    return store.put_task(info, said)


def state(store: SQLiteStore, info: TaskInfo, to: TaskState, at: float) -> TaskInfo:
    moved = info.model_copy(update={"state": to})
    said = Event(
        kind=EventKind.TASK,
        agent_id=info.agent_id,
        task_id=info.id,
        at=at,
        data={"state": to.value},
    )
    return store.put_task(moved, said)


def model(store: SQLiteStore, tid: str, aid: str, *calls: tuple[str | None, int, int]) -> None:
    usage = [{"input_tokens": i, "output_tokens": o, "model": m} for m, i, o in calls]
    store.append_event(
        Event(
            kind=EventKind.MODEL, agent_id=aid, task_id=tid, data={"call": "step", "usage": usage}
        )
    )


def steps(store: SQLiteStore, tid: str, aid: str, n: int) -> None:
    for _ in range(n):
        store.append_event(Event(kind=EventKind.STEP, agent_id=aid, task_id=tid, data={}))


@pytest.fixture
def tree(store: SQLiteStore) -> SQLiteStore:
    """boss (agent-a) delegates task-root to two specialists (agent-b, agent-c); agent-b's
    subtask has a subtask of its own (on agent-d, hired by agent-b)."""
    agent(store, "agent-a")
    agent(store, "agent-b", "agent-a")
    agent(store, "agent-c", "agent-a")
    agent(store, "agent-d", "agent-b")
    root = task(store, "task-root", "agent-a")
    task(store, "task-b", "agent-b", "task-root")
    task(store, "task-c", "agent-c", "task-root")
    task(store, "task-d", "agent-d", "task-b")
    task(store, "task-other", "agent-a")  # not in the subtree
    model(store, "task-root", "agent-a", ("gpt-4o", 1000, 100), ("gpt-4o", 1000, 100))
    model(store, "task-b", "agent-b", ("gpt-4o-mini-x", 500, 50))
    model(store, "task-c", "agent-c", ("gpt-4o", 2000, 0))
    model(store, "task-d", "agent-d", ("gpt-4o", 10, 1))
    model(store, "task-other", "agent-a", ("gpt-4o", 99_999, 0))
    steps(store, "task-b", "agent-b", 3)
    steps(store, "task-d", "agent-d", 2)
    running = state(store, root, TaskState.RUNNING, at=100.0)
    waiting = state(store, running, TaskState.WAITING, at=104.0)  # 4 s running
    running = state(store, waiting, TaskState.RUNNING, at=150.0)  # waiting not counted
    state(store, running, TaskState.SUCCEEDED, at=151.5)  # 1.5 s more
    return store


def test_a_tasks_own_usage_and_its_subtrees_are_summed_from_the_events(
    tree: SQLiteStore,
) -> None:
    spent = tree.task_usage(["task-root", "task-b", "nope"], PRICES)

    assert set(spent) == {"task-root", "task-b"}  # an unknown id is left out
    own, subtree = spent["task-root"]
    assert own == Usage(
        model_calls=2, input_tokens=2000, output_tokens=200, cost_usd=0.007, steps=0, wall_s=5.5
    )
    assert (subtree.model_calls, subtree.input_tokens, subtree.output_tokens) == (5, 4510, 251)
    assert subtree.steps == 5
    # gpt-4o-mini-x matches the gpt-4o* glob too: every call is priced
    assert subtree.cost_usd == pytest.approx((4510 * 2.5 + 251 * 10) / 1e6)
    b_own, b_subtree = spent["task-b"]
    assert (b_own.steps, b_subtree.steps, b_subtree.model_calls) == (3, 5, 2)


def test_an_unpriced_call_is_counted_apart_from_the_priced_cost(tree: SQLiteStore) -> None:
    model(tree, "task-d", "agent-d", ("mystery", 1, 1))
    own, subtree = tree.task_usage(["task-root"], PRICES)["task-root"]
    assert own.cost_usd == pytest.approx(0.007)
    assert subtree.cost_usd == pytest.approx((4510 * 2.5 + 251 * 10) / 1e6)  # priced ones
    assert (subtree.unpriced_calls, subtree.tokens) == (1, 4763)
    no_prices = tree.task_usage(["task-c"], {})["task-c"][0]  # no prices at all
    assert no_prices.cost_usd == 0.0 and no_prices.unpriced_calls == no_prices.model_calls


def test_a_running_task_counts_its_time_until_now(store: SQLiteStore) -> None:
    import time

    agent(store, "agent-a")
    t = task(store, "task-1", "agent-a")
    state(store, t, TaskState.RUNNING, at=time.time() - 2.0)
    own, _ = store.task_usage(["task-1"], PRICES)["task-1"]
    assert 2.0 <= own.wall_s < 30.0


def test_an_agents_usage_and_its_subtree_of_agents(tree: SQLiteStore) -> None:
    own, subtree = tree.agent_usage("agent-a", PRICES) or (None, None)
    assert own is not None and subtree is not None
    assert own.model_calls == 3  # task-root and task-other
    assert subtree.model_calls == 6 and subtree.steps == 5
    b_own, b_subtree = tree.agent_usage("agent-b", PRICES) or (None, None)
    assert b_own is not None and b_subtree is not None
    assert (b_own.steps, b_subtree.steps) == (3, 5)  # agent-d was hired by agent-b
    assert tree.agent_usage("agent-nope", PRICES) is None


def test_usage_is_filled_in_when_read_and_never_stored(tree: SQLiteStore) -> None:
    stored = tree.get_task("task-b")
    assert stored is not None and stored.usage is None
    (shown,) = tree.with_usage([stored], PRICES)
    assert shown.usage is not None and shown.usage.steps == 3
    assert shown.subtree_usage is not None and shown.subtree_usage.steps == 5
    tree.put_task(shown)  # written back with its usage: the usage is not kept
    again = tree.get_task("task-b")
    assert again is not None and again.usage is None and again.subtree_usage is None
    assert (
        '"usage"'
        not in tree._rows("raw", "SELECT payload FROM tasks WHERE id = 'task-b'", [])[0][0]
    )
