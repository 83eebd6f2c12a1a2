"""The steps of ``orchestrator.local`` that connect to the cluster, run as child processes
(``python -m orchestrator._local_ray deploy|teardown``) so that the caller (a notebook, a
test) never becomes a driver of the local cluster, nor has to leave the Ray it is on.

- ``deploy --address A --port P --keys-file F``: create the recorder (writing to
  ``ORCHESTRATOR_DATA_DIR``) and run the API on Serve at 127.0.0.1:P.
- ``nodes --address A``: print the cluster's live nodes as JSON (from its GCS; no driver).
- ``teardown --address A``: shut Serve down and fire every live top-level agent (their
  subtrees and desktops go with them), a page of them at a time, concurrently within a
  page, until none is left (``fire_live_agents``).

Only the key file's path is passed, never a key.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from orchestrator.domain import AgentInfo, AgentStatus
from orchestrator.records import MAX_LIMIT

log = logging.getLogger("orchestrator.local")

TEARDOWN_AGENT_TIMEOUT_S = 60.0

LIVE = (AgentStatus.STARTING, AgentStatus.IDLE, AgentStatus.BUSY)
"""Statuses of an agent ``down`` fires."""


async def fire_live_agents(
    list_live: Callable[[int], Awaitable[list[AgentInfo]]],
    fire: Callable[[str], Awaitable[None]],
    *,
    page: int = MAX_LIMIT,
) -> int:
    """Fire every live top-level agent; how many were fired (or tried).

    ``list_live(n)`` lists at most ``n`` live top-level agents, oldest first (the records
    cap a list at ``MAX_LIMIT``); ``fire(id)`` fires one, logging rather than raising. The
    agents of a page are fired concurrently and the list is asked again (a fired agent is no
    longer live) until it holds none not tried yet, so a cluster with more live agents than
    one page has all of them fired. An agent whose firing failed stays live and is not tried
    again: the next list asks for that many more, to see past it (the head's stop takes it).
    """
    tried: set[str] = set()
    limit = page
    while True:
        listed = [a.id for a in await list_live(limit)]
        batch = [agent_id for agent_id in listed if agent_id not in tried]
        if batch:
            tried.update(batch)
            await asyncio.gather(*(fire(agent_id) for agent_id in batch))
        elif len(listed) < limit or limit >= MAX_LIMIT:
            return len(tried)
        limit = min(MAX_LIMIT, page + len(listed) - len(batch))


def _connect(address: str) -> Any:
    """``actors.Runtime.connect`` to the cluster (its recorder writing to the data dir)."""
    from orchestrator._local_head import driver_env

    os.environ.update(driver_env())  # as the parent set it: keep 127.0.0.1 as it is
    from actors import Runtime
    from orchestrator.config import settings

    return Runtime.connect(address, data_dir=settings().data_dir)


def deploy(address: str, port: int, keys_file: str) -> None:
    from orchestrator._local_head import HOST
    from serve_app import deploy as deploy_api

    t0 = time.monotonic()
    _connect(address)
    url = deploy_api(HOST, port, keys_file=keys_file)
    log.info("API deployed at %s in %.1f s", url, time.monotonic() - t0)


def teardown(address: str) -> None:
    from ray import serve

    t0 = time.monotonic()
    rt = _connect(address)
    try:
        serve.shutdown()  # type: ignore[no-untyped-call]
    except Exception as e:  # noqa: BLE001 - the agents must still be stopped
        log.warning("serve shutdown failed: %s", e)
    log.info("serve shut down in %.1f s", time.monotonic() - t0)

    async def list_live(limit: int) -> list[AgentInfo]:
        agents: list[AgentInfo] = await rt.records.list_agents(
            top_level=True, status=list(LIVE), limit=limit
        )
        return agents

    async def fire(agent_id: str) -> None:
        try:
            await asyncio.wait_for(rt.fire(agent_id), TEARDOWN_AGENT_TIMEOUT_S)
        except Exception as e:  # noqa: BLE001 - the head's stop takes it anyway
            log.warning("firing %s failed: %s", agent_id, e)

    async def fire_all() -> None:
        fired = await fire_live_agents(list_live, fire)
        log.info("fired %d top-level agent(s)", fired)

    asyncio.run(fire_all())
    log.info("teardown done in %.1f s", time.monotonic() - t0)


def nodes(address: str) -> list[dict[str, Any]]:
    """The cluster's live nodes, as its GCS knows them (no driver connects): id, whether
    it is the head, its ``desktop`` units and its address, head first."""
    from ray._raylet import GcsClient  # type: ignore[attr-defined]
    from ray.core.generated.gcs_pb2 import GcsNodeInfo  # type: ignore[attr-defined]

    from orchestrator._local_head import driver_env

    os.environ.update(driver_env())
    infos = GcsClient(address=address).get_all_node_info(
        timeout=10, state_filter=GcsNodeInfo.GcsNodeState.ALIVE
    )
    rows = [
        {
            "node_id": info.node_id.hex(),
            "head": bool(info.is_head_node),
            "desktops": float(info.resources_total.get("desktop", 0.0)),
            "address": info.node_manager_address,
        }
        for info in infos.values()
    ]
    return sorted(rows, key=lambda r: (not r["head"], r["node_id"]))


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    parser = argparse.ArgumentParser(prog="python -m orchestrator._local_ray")
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("deploy")
    p.add_argument("--address", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--keys-file", required=True)
    p = sub.add_parser("teardown")
    p.add_argument("--address", required=True)
    p = sub.add_parser("nodes", help="print the live nodes as JSON")
    p.add_argument("--address", required=True)
    args = parser.parse_args(argv)
    if args.step == "deploy":
        deploy(args.address, args.port, args.keys_file)
    elif args.step == "nodes":
        print(json.dumps(nodes(args.address)))  # noqa: T201 - the step's output
    else:
        teardown(args.address)
    return 0


if __name__ == "__main__":
    sys.exit(main())
