"""reliability.md check 4 on the real thing: a worker node removed under a busy agent.

A cluster of its own (``ray.cluster_utils.Cluster``: a head and a worker raylet on this
machine, in a child process, so that the session's cluster is not touched): the head holds
the recorder and the API (Serve), the worker the only desktop units, so the agent and its
desktop live there. The worker is removed mid-task, as a lost machine would be. Then: the
task is failed with a reason, the agent is recorded failed, its orphaned desktop is
removed, the API answers throughout; and once a worker node is back, the same agent can be
created again and works.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .serve_api import run_scenario

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SCENARIO = r"""
import asyncio, json, os, socket, sys, time

import httpx
import ray
from ray.cluster_utils import Cluster

from actors import Runtime
from orchestrator._docker import client
from orchestrator.desktop import DesktopSpec
from orchestrator.domain import AgentSpec, AgentStatus, TaskSpec, TaskState
from serve_app import deploy
from tests.integration.serve_api import free_port

IMAGE = os.environ["ORCHESTRATOR_DESKTOP_IMAGE"]
TENANT = "t-nodeloss"
out = {}


def containers(path):
    found = client().api.containers(all=True, filters={"label": "orchestrator.desktop"})
    return [c for c in found if c["Labels"].get("orchestrator.path") == path]


async def until(check, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(0.2)  # polling interval of a deadline-bound wait


async def main():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    worker = cluster.add_node(num_cpus=2, resources={"desktop": 2})
    cluster.wait_for_nodes()
    rt = Runtime.connect(cluster.address)
    key = "node-loss-key-0123456789"
    keys = os.path.join(os.environ["ORCHESTRATOR_DATA_DIR"], "api-keys")
    with open(keys, "w") as f:
        f.write(f"{TENANT}:{key}\n")
    url = deploy(port=free_port(), keys_file=keys)
    # A connection of its own per request: every node runs a Serve proxy, and on this one
    # machine they share the loopback port, so a connection the kernel gave to the removed
    # worker's proxy is reset (on separate machines a client talks to its own node's address).
    api = httpx.Client(
        base_url=url,
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
        limits=httpx.Limits(max_keepalive_connections=0),
    )
    spec = AgentSpec(name="far", role="tester", desktop=DesktopSpec(image=IMAGE))
    try:
        agent = await rt.create_agent(TENANT, spec)
        out["desktops"] = len(containers(agent.path))
        where = await rt.recorder.location.remote()
        out["recorder_on_head"] = where["node_id"] != worker.unique_id
        long = TaskSpec(
            description="long",
            script={"steps": [{"type": "shell", "command": "sleep 300", "timeout_s": 600}]},
        )
        task = await rt.assign(agent.id, long)

        async def running():
            return (await rt.task(task.id)).state == TaskState.RUNNING

        await until(running, 30, "the task running")
        t0 = time.monotonic()
        cluster.remove_node(worker)
        answers = []

        async def failed():
            try:
                r = api.get(f"/v1/tasks/{task.id}")
            except httpx.TransportError:  # the removed node's proxy, as it went (see above)
                answers.append("reset")
                return None
            answers.append(r.status_code)
            return r.json() if r.status_code == 200 and r.json()["state"] == "failed" else None

        got = await until(failed, 60, "the task failed after the node was lost")
        out["task_failed_s"] = round(time.monotonic() - t0, 1)
        out["task_error"] = got["error"]
        out["answers"] = answers
        out["agent_status"] = (await rt.agent(agent.id)).status.value

        async def desktop_gone():
            return not containers(agent.path)

        await until(desktop_gone, 60, "the lost agent's desktop removed")
        out["desktop_gone_s"] = round(time.monotonic() - t0, 1)

        cluster.add_node(num_cpus=2, resources={"desktop": 2})
        cluster.wait_for_nodes()
        again = await rt.create_agent(TENANT, spec)
        echo = TaskSpec(
            description="hi", script={"steps": [{"type": "shell", "command": "echo back"}]}
        )
        done = await rt.wait((await rt.assign(again.id, echo)).id, 60)
        out["again"] = [again.id != agent.id, done.state.value, done.result]
        await rt.fire(again.id)
    finally:
        api.close()
        from ray import serve
        serve.shutdown()
        ray.shutdown()
        cluster.shutdown()
    print(json.dumps(out))


asyncio.run(main())
"""


def test_a_lost_worker_node_fails_its_agents_tasks_and_the_api_keeps_answering(
    tmp_path: Path, desktop_image: str
) -> None:
    out = run_scenario(SCENARIO, tmp_path, desktop_image)
    assert out["recorder_on_head"] and out["desktops"] == 1, out
    assert out["task_failed_s"] < 30 and "died" in out["task_error"], out
    assert out["agent_status"] == "failed", out
    # the API answered throughout: every answer a 200, after at most a few connections reset
    # while the removed worker's own proxy went away (never once the head had answered)
    answers = out["answers"]
    first = next(i for i, code in enumerate(answers) if code != "reset")
    assert first <= 3 and all(code == 200 for code in answers[first:]), out
    assert out["desktop_gone_s"] < 60, out
    assert out["again"] == [True, "succeeded", "back"], out
