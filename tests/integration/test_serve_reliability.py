"""Reliability check 5: kill a Serve replica under steady load; at least 99% of requests
succeed and a replacement replica serves. Real Serve with two replicas of the API, real
HTTP, a real agent; the load is bounded (4 clients, ~10 s, loopback only)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import ray

from tests.integration.test_serve_api import TENANT_A, Api, api, until

pytestmark = pytest.mark.integration

__all__ = ["api"]  # the imported module fixture

APP = "replicated"
CLIENTS = 4
BEFORE_S = 3.0
AFTER_S = 7.0


def _replicas() -> set[str]:
    names = ray.util.list_named_actors(all_namespaces=True)
    return {
        n["name"]
        for n in names
        if n["namespace"] == "serve" and n["name"].startswith(f"SERVE_REPLICA::{APP}#")
    }


@pytest.fixture(scope="module")
def replicated(api: Api) -> Iterator[str]:
    """The API as a second app with two fixed replicas; its base URL."""
    from ray import serve

    from serve_app._app import ApiDeployment

    keys = ",".join(f"{t}:{k}" for t, k in api.keys.items())
    app = ApiDeployment.options(  # type: ignore[attr-defined]
        name="orchestrator-api-replicated",
        num_replicas=2,
        autoscaling_config=None,
        ray_actor_options={
            "num_cpus": 0,
            "runtime_env": {"env_vars": {"ORCHESTRATOR_API_KEYS": keys}},
        },
    ).bind()
    serve.run(app, name=APP, route_prefix=f"/{APP}")
    url = f"{api.url}/{APP}"
    try:
        until(lambda: len(_replicas()) == 2, timeout_s=60, what="two replicas")
        with httpx.Client(base_url=url, timeout=5) as c:
            until(lambda: c.get("/healthz").status_code == 200, timeout_s=60, what="/healthz")
        yield url
    finally:
        serve.delete(APP)


@pytest.fixture(scope="module")
def agent(api: Api) -> Iterator[dict[str, Any]]:
    with api.agent("steady") as info:
        yield info


def test_killing_a_replica_under_load_loses_under_one_percent(
    api: Api, replicated: str, agent: dict[str, Any]
) -> None:
    headers = {"Authorization": f"Bearer {api.keys[TENANT_A]}"}
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=replicated, headers=headers, timeout=10) as c:
            while not stop.is_set():
                try:
                    r = c.get(f"/v1/agents/{agent['id']}")
                    ok = r.status_code == 200 and r.json()["id"] == agent["id"]
                    what = "ok" if ok else f"http {r.status_code}"
                except httpx.HTTPError as e:
                    what = type(e).__name__
                with lock:
                    outcomes[what] += 1

    before = _replicas()
    assert len(before) == 2, before
    threads = [threading.Thread(target=load) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    try:
        time.sleep(BEFORE_S)  # steady load before the kill (the load's own duration)
        victim = sorted(before)[0]
        ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
        killed_at = time.monotonic()
        replaced = until(
            lambda: (now := _replicas()) and len(now) == 2 and victim not in now and now,
            timeout_s=60,
            what="a replacement replica",
        )
        time.sleep(max(0.0, AFTER_S - (time.monotonic() - killed_at)))  # load after the kill
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    total = sum(outcomes.values())
    ok = outcomes["ok"]
    print(f"replica kill under load: {ok}/{total} ok; {dict(outcomes)}")  # noqa: T201
    assert total >= 100, outcomes  # a real load, not a handful
    assert ok / total >= 0.99, outcomes

    # the replacement serves: requests keep succeeding with only the new pair alive
    new = (replaced - before).pop()
    with httpx.Client(base_url=replicated, headers=headers, timeout=10) as c:
        assert all(c.get(f"/v1/agents/{agent['id']}").status_code == 200 for _ in range(20))
    assert new in _replicas()
