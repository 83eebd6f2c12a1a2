"""The relay across nodes: the API replica on the head, the agent and its desktop on a worker
node whose loopback noVNC proxy is off (``ORCHESTRATOR_LIVE_VIEW_PROXY=off`` in that node's
environment). The relay still gets the desktop's frames, and they came through the agent's
own actor (its relay counters), not through any loopback link of the worker.

A cluster of its own (``ray.cluster_utils.Cluster``: a head and a worker raylet on this
machine, in a child process, so that the session's cluster is not touched).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .serve_api import run_scenario

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SCENARIO = r"""
import asyncio, json, os, socket, time

import httpx
import ray
from ray.cluster_utils import Cluster

from actors import NAMESPACE, Runtime
from orchestrator.desktop import DesktopSpec
from orchestrator.domain import AgentSpec
from serve_app import deploy
from tests.integration.serve_api import free_port
from tests.integration.relay_client import Viewer

IMAGE = os.environ["ORCHESTRATOR_DESKTOP_IMAGE"]
TENANT = "t-relay-nodes"
out = {}


def node_of(handle):
    return ray.get(
        handle.__ray_call__.remote(lambda _self: ray.get_runtime_context().get_node_id()),
        timeout=30,
    )


async def main():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    # The worker's processes (its raylet, the agent's actor) inherit this; the head's do not.
    os.environ["ORCHESTRATOR_LIVE_VIEW_PROXY"] = "off"
    try:
        cluster.add_node(num_cpus=0, resources={"desktop": 2})
    finally:
        del os.environ["ORCHESTRATOR_LIVE_VIEW_PROXY"]
    cluster.wait_for_nodes()
    rt = Runtime.connect(cluster.address)
    key = "relay-nodes-key-0123456789"
    keys = os.path.join(os.environ["ORCHESTRATOR_DATA_DIR"], "api-keys")
    with open(keys, "w") as f:
        f.write(f"{TENANT}:{key}\n")
    url = deploy(port=free_port(), keys_file=keys)
    # A connection per request: every node runs a Serve proxy on the same loopback port here.
    api = httpx.Client(
        base_url=url,
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
        limits=httpx.Limits(max_keepalive_connections=0),
    )
    try:
        spec = AgentSpec(name="far", role="tester", desktop=DesktopSpec(image=IMAGE))
        agent = await rt.create_agent(TENANT, spec)
        handle = ray.get_actor(agent.path, namespace=NAMESPACE)
        nodes = ray.nodes()
        worker_id = next(n["NodeID"] for n in nodes if n["Alive"] and "desktop" in n["Resources"])
        out["agent_on_worker"] = node_of(handle) == worker_id
        replicas = [
            a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == "serve" and a["name"].startswith("SERVE_REPLICA")
        ]
        out["replicas_on_head"] = bool(replicas) and all(
            node_of(ray.get_actor(n, namespace="serve")) != worker_id for n in replicas
        )
        r = api.get(f"/v1/agents/{agent.id}/live-view")
        out["live_view"] = [r.status_code, r.text[:300]]
        before = ray.get(handle.vnc_counters.remote(), timeout=30)
        r = api.post(f"/v1/agents/{agent.id}/tickets", json={"mode": "control"})
        r.raise_for_status()
        viewer = None
        for _ in range(10):  # a connection may land on the worker's proxy: it relays as well
            try:
                viewer = Viewer.open("ws" + url.removeprefix("http") + r.json()["relay_path"])
                break
            except OSError:
                continue
        init = viewer.handshake()
        viewer.full_frame(init)
        viewer.full_frame(init)
        viewer.close()
        after = ray.get(handle.vnc_counters.remote(), timeout=30)
        out["screen"] = [init.width, init.height]
        out["through_actor"] = after.bytes_to_viewer - before.bytes_to_viewer
        out["opened"] = after.opened - before.opened
        await rt.fire(agent.id)
    finally:
        api.close()
        from ray import serve
        serve.shutdown()
        ray.shutdown()
        cluster.shutdown()
    print(json.dumps(out))


asyncio.run(main())
"""


def test_the_relay_gets_frames_of_a_desktop_on_another_node_without_its_loopback_proxy(
    tmp_path: Path, desktop_image: str
) -> None:
    out = run_scenario(SCENARIO, tmp_path, desktop_image)
    assert out["agent_on_worker"] and out["replicas_on_head"], out
    # the worker's desktop serves no loopback link: the API says so, it does not hand one out
    status, text = out["live_view"]
    assert status >= 400 and "ORCHESTRATOR_LIVE_VIEW_PROXY" in text, out
    width, height = out["screen"]
    assert out["opened"] == 1, out
    # two whole raw frames (4 bytes a pixel) came through the agent's own actor
    assert out["through_actor"] >= 2 * width * height * 4, out
