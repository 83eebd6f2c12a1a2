"""Ray's errors in our terms (``actors.ours``, the one table), the answers they get, and the
one retry-after constant every ``Retry-After`` of the API says. No Ray is started."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from ray.exceptions import ActorDiedError, GetTimeoutError, RayActorError, RayTaskError

import serve_app
from actors import ours
from actors._agent_ref import ray_call
from orchestrator.errors import (
    AgentGoneError,
    QuotaExceededError,
    RecordError,
    UnavailableError,
)
from orchestrator.records import SQLiteStore
from serve_app import _errors, _limit, _stream
from serve_app._errors import CAPACITY_RETRY_AFTER_S, RETRY_AFTER_S, _runtime_error
from tests.fakes.runtime import LocalRuntime
from tests.fakes.runtime_app import AUTH, api


@pytest.fixture
def app(store: SQLiteStore) -> Iterator[tuple[TestClient, LocalRuntime]]:
    with api(store) as both:
        yield both


def _wrapped(e: BaseException, *through: str) -> BaseException:
    for where in through:
        e = RayTaskError(where, "Traceback ...", e).as_instanceof_cause()  # type: ignore[no-untyped-call]
    return e


def test_ray_errors_become_ours() -> None:
    quota = QuotaExceededError("quota exceeded: max_agents")
    assert ours(_wrapped(quota, "Recorder.admit_agent", "AgentActor.hire")) is quota
    missing = FileNotFoundError(2, "No such file", "/x")
    assert ours(_wrapped(missing, "AgentActor.read_path")) is missing
    assert isinstance(ours(ActorDiedError()), AgentGoneError)
    assert isinstance(ours(_wrapped(ActorDiedError(), "AgentActor.tree")), AgentGoneError)
    assert isinstance(ours(RayActorError()), UnavailableError)
    assert isinstance(ours(GetTimeoutError("slow")), UnavailableError)
    bug = ZeroDivisionError("boom")
    assert ours(bug) is bug


def test_ray_call_raises_ours() -> None:
    async def died() -> None:
        raise ActorDiedError()

    async def refused() -> None:
        raise _wrapped(QuotaExceededError("quota exceeded"), "Recorder.admit_task")

    with pytest.raises(AgentGoneError):
        asyncio.run(ray_call(died()))
    with pytest.raises(QuotaExceededError, match="quota exceeded"):
        asyncio.run(ray_call(refused()))


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (AgentGoneError("the agent's actor has died"), 409, "agent_gone"),
        (UnavailableError("the agent's actor is unavailable"), 503, "unavailable"),
        (RecordError("disk I/O error"), 503, "records_unavailable"),
        (_wrapped(ActorDiedError(), "AgentActor.hire"), 409, "agent_gone"),
        (RayActorError(), 503, "unavailable"),
    ],
)
def test_the_answers_to_a_gone_or_unavailable_cluster(
    exc: BaseException, status: int, code: str
) -> None:
    r = _runtime_error(exc)
    assert r.status_code == status and json.loads(bytes(r.body))["error"]["code"] == code
    if status == 503:
        assert r.headers["Retry-After"] == str(RETRY_AFTER_S)


def test_a_route_whose_agent_died_is_409_agent_gone(
    app: tuple[TestClient, LocalRuntime], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, rt = app
    agent = client.post("/v1/agents", json={"name": "x"}, headers=AUTH).json()

    async def died(*args: object) -> bytes:
        raise AgentGoneError("the agent's actor has died")

    monkeypatch.setattr(rt.agents[agent["id"]], "screenshot", died)
    r = client.get(f"/v1/agents/{agent['id']}/screenshot", headers=AUTH)
    assert r.status_code == 409 and r.json()["error"]["code"] == "agent_gone"


# ---------------------------------------------------------------------- one retry-after


def test_every_retry_after_of_the_api_is_the_one_constant(
    app: tuple[TestClient, LocalRuntime], monkeypatch: pytest.MonkeyPatch
) -> None:
    from serve_app._app import ApiDeployment

    assert _limit.RETRY_AFTER_S is _errors.RETRY_AFTER_S
    # over the replica's request cap
    assert _limit.overloaded("busy").headers["Retry-After"] == str(RETRY_AFTER_S)
    # past Serve's own queue
    config = ApiDeployment._deployment_config  # type: ignore[attr-defined]
    assert config.backpressure_config.retry_after_s == RETRY_AFTER_S
    # the records or the cluster unavailable
    assert _runtime_error(RecordError("x")).headers["Retry-After"] == str(RETRY_AFTER_S)
    assert _runtime_error(UnavailableError("x")).headers["Retry-After"] == str(RETRY_AFTER_S)
    # no free event stream slot
    client, rt = app
    agent = client.post("/v1/agents", json={"name": "s"}, headers=AUTH).json()
    task = client.post(f"/v1/agents/{agent['id']}/tasks", json={"description": "d"}, headers=AUTH)
    monkeypatch.setattr(_stream._streams, "_limit", 0)
    r = client.get(f"/v1/tasks/{task.json()['id']}/events/stream", headers=AUTH)
    assert r.status_code == 429 and r.headers["Retry-After"] == str(RETRY_AFTER_S)
    # a full cluster is the one other value, longer on purpose
    assert CAPACITY_RETRY_AFTER_S > RETRY_AFTER_S


def test_no_module_of_the_api_writes_a_retry_after_of_its_own() -> None:
    """A literal ``"Retry-After": "<n>"`` (or ``retry_after_s=<n>``) would be a second value."""
    literal = re.compile(r"""Retry-After["']\s*:\s*["']?\d|retry_after_s\s*=\s*\d""")
    for path in Path(serve_app.__file__).parent.glob("*.py"):
        assert not literal.search(path.read_text()), path
