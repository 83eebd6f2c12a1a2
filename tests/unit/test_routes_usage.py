"""Usage and budgets through the API on an in-process runtime (real records, no Ray, no
Docker): ``GET /v1/tasks/{id}`` shows what the task spent and what its subtree spent (calls of
a model without a configured price counted apart: ``unpriced_calls``), the list shows them
too, ``GET /v1/agents/{id}`` shows an agent's; a task's budget goes in with its spec; the
SDK (sync and async) reads ``task.usage`` and ``task.subtree_usage``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from orchestrator.domain import Event, EventKind, TaskInfo, TaskSpec
from orchestrator.records import RecordStore, SQLiteStore
from orchestrator.sdk import AsyncClient, Client
from tests.fakes.runtime import LocalRuntime
from tests.fakes.runtime_app import AUTH, KEY, api
from tests.unit.test_sdk_person import _Via

App = tuple[TestClient, LocalRuntime]


@pytest.fixture
def prices(operator_env: Callable[..., None]) -> None:
    operator_env(ORCHESTRATOR_MODEL_PRICES='{"gpt-4o*": {"input": 2.5, "output": 10}}')


@pytest.fixture
def app(store: SQLiteStore, prices: None) -> Iterator[App]:
    with api(store) as both:
        yield both


def spend(store: RecordStore, task: TaskInfo, model: str, tokens: int, steps: int) -> None:
    usage = [{"input_tokens": tokens, "output_tokens": 0, "model": model}]
    store.append_event(
        Event(kind=EventKind.MODEL, agent_id=task.agent_id, task_id=task.id, data={"usage": usage})
    )
    for _ in range(steps):
        store.append_event(Event(kind=EventKind.STEP, agent_id=task.agent_id, task_id=task.id))


def subtask_of(store: RecordStore, parent: dict[str, Any]) -> TaskInfo:
    child = TaskInfo(
        id=f"{parent['id']}-sub",
        agent_id=parent["agent_id"],
        parent_task_id=parent["id"],
        spec=TaskSpec(description="part"),
    )
    said = Event(kind=EventKind.TASK, agent_id=child.agent_id, task_id=child.id,
                 data={"state": "pending"})  # fmt: skip
    return store.put_task(child, said)


def budgeted_tree(app: App) -> tuple[dict[str, Any], TaskInfo]:
    client, rt = app
    agent = client.post("/v1/agents", json={"name": "boss"}, headers=AUTH).json()
    spec = {"description": "a tree", "budget": {"tokens": 10_000, "cost_usd": 1.5}}
    r = client.post(f"/v1/agents/{agent['id']}/tasks", json=spec, headers=AUTH)
    assert r.status_code == 202, r.text
    root: dict[str, Any] = r.json()
    assert root["spec"]["budget"] == {"steps": None, "tokens": 10_000, "cost_usd": 1.5,
                                      "wall_s": None}  # fmt: skip
    stored = rt.store.get_task(root["id"])
    assert stored is not None
    child = subtask_of(rt.store, root)
    spend(rt.store, stored, "gpt-4o-2024-08-06", 1000, 2)
    spend(rt.store, child, "gpt-4o-mini", 4000, 3)
    return root, child


def test_a_task_shows_its_own_usage_and_its_subtrees(app: App) -> None:
    client, rt = app
    root, child = budgeted_tree(app)

    shown = client.get(f"/v1/tasks/{root['id']}", headers=AUTH).json()

    assert shown["usage"] == {
        "model_calls": 1, "input_tokens": 1000, "output_tokens": 0, "cost_usd": 0.0025,
        "unpriced_calls": 0, "steps": 2, "wall_s": 0.0,
    }  # fmt: skip
    assert shown["subtree_usage"]["input_tokens"] == 5000
    assert shown["subtree_usage"]["steps"] == 5
    assert shown["subtree_usage"]["cost_usd"] == pytest.approx(0.0125)
    sub = client.get(f"/v1/tasks/{child.id}", headers=AUTH).json()
    assert sub["usage"] == sub["subtree_usage"] and sub["usage"]["steps"] == 3
    listed = {t["id"]: t for t in client.get("/v1/tasks", headers=AUTH).json()}
    assert listed[root["id"]]["subtree_usage"] == shown["subtree_usage"]


def test_calls_of_a_model_without_a_price_are_counted_apart(app: App) -> None:
    client, rt = app
    root, child = budgeted_tree(app)
    spend(rt.store, child, "mystery-model", 10, 0)

    shown = client.get(f"/v1/tasks/{root['id']}", headers=AUTH).json()

    assert shown["usage"]["cost_usd"] == 0.0025  # its own calls are all priced
    assert shown["subtree_usage"]["cost_usd"] == pytest.approx(0.0125)  # the priced calls
    assert shown["subtree_usage"]["unpriced_calls"] == 1  # and one of unknown cost
    assert shown["subtree_usage"]["input_tokens"] == 5010


def test_an_agent_shows_what_its_tasks_spent(app: App) -> None:
    client, _ = app
    root, _ = budgeted_tree(app)

    shown = client.get(f"/v1/agents/{root['agent_id']}", headers=AUTH).json()

    assert shown["usage"]["model_calls"] == 2 and shown["usage"]["steps"] == 5
    assert shown["subtree_usage"] == shown["usage"]  # it hired nobody


def test_the_sdk_reads_the_usage_sync_and_async(app: App) -> None:
    client, _ = app
    root, _ = budgeted_tree(app)
    with (
        httpx.Client(transport=_Via(client)) as http,
        Client("http://testserver", KEY, http=http) as sdk,
    ):
        task = sdk.task(root["id"])
        assert task.usage is not None and task.usage.tokens == 1000
        assert task.subtree_usage is not None and task.subtree_usage.steps == 5
        assert task.info.spec.budget is not None and task.info.spec.budget.tokens == 10_000
        agent = sdk.agent(root["agent_id"])
        assert agent.usage is not None and agent.usage.model_calls == 2
        made = agent.assign("more", budget={"steps": 3})
        assert made.info.spec.budget is not None and made.info.spec.budget.steps == 3

    import asyncio

    class _AsyncVia(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            return _Via(client).handle_request(request)

    async def read() -> None:
        async with (
            httpx.AsyncClient(transport=_AsyncVia()) as http,
            AsyncClient("http://testserver", KEY, http=http) as sdk,
        ):
            task = await sdk.task(root["id"])
            assert task.subtree_usage is not None and task.subtree_usage.tokens == 5000

    asyncio.run(read())


def test_the_cli_lists_what_each_tree_spent(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from orchestrator import _cli_api
    from orchestrator.cli import main
    from tests.unit.test_sdk_person import _Unclosed

    client, rt = app
    root, child = budgeted_tree(app)
    spend(rt.store, child, "mystery-model", 10, 0)
    with (
        httpx.Client(transport=_Via(client)) as http,
        Client("http://testserver", KEY, http=http) as sdk,
    ):
        monkeypatch.setattr(_cli_api, "_client", lambda url, key: _Unclosed(sdk))
        done = CliRunner().invoke(main, ["tasks", "--url", "http://testserver", "--api-key", KEY])
    assert done.exit_code == 0, done.output
    (line,) = [x for x in done.output.splitlines() if x.startswith(root["id"] + " ")]
    assert line.endswith("  [5,010 tok $0.0125+?, 5 steps]"), line  # +?: an unpriced model too
    (sub,) = [x for x in done.output.splitlines() if x.startswith(child.id)]
    assert sub.endswith("  [4,010 tok $0.0100+?, 3 steps]"), sub
