"""The steps of ``orchestrator.local`` that connect to the cluster, run as child processes
(``python -m orchestrator._local_ray deploy|teardown``) so that the caller (a notebook, a
test) never becomes a driver of the local cluster, nor has to leave the Ray it is on.

- ``deploy --address A --port P --keys-file F``: create the recorder (writing to
  ``ORCHESTRATOR_DATA_DIR``) and run the API on Serve at 127.0.0.1:P.
- ``teardown --address A``: shut Serve down and fire every live top-level agent (their
  subtrees and desktops go with them), concurrently.

Only the key file's path is passed, never a key.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from typing import Any

log = logging.getLogger("orchestrator.local")

TEARDOWN_AGENT_TIMEOUT_S = 60.0


def _connect(address: str) -> Any:
    """``actors.Runtime.connect`` to the cluster (its recorder writing to the data dir)."""
    from orchestrator.local import driver_env

    os.environ.update(driver_env())  # as the parent set it: keep 127.0.0.1 as it is
    from actors import Runtime
    from orchestrator.config import settings

    return Runtime.connect(address, data_dir=settings().data_dir)


def deploy(address: str, port: int, keys_file: str) -> None:
    from orchestrator.local import HOST
    from serve_app import deploy as deploy_api

    t0 = time.monotonic()
    _connect(address)
    url = deploy_api(HOST, port, keys_file=keys_file)
    log.info("API deployed at %s in %.1f s", url, time.monotonic() - t0)


def teardown(address: str) -> None:
    from ray import serve

    from orchestrator.domain import AgentStatus

    t0 = time.monotonic()
    rt = _connect(address)
    try:
        serve.shutdown()  # type: ignore[no-untyped-call]
    except Exception as e:  # noqa: BLE001 - the agents must still be stopped
        log.warning("serve shutdown failed: %s", e)
    log.info("serve shut down in %.1f s", time.monotonic() - t0)

    async def fire_all() -> None:
        agents = await rt.list_agents()
        live = (AgentStatus.STARTING, AgentStatus.IDLE, AgentStatus.BUSY)
        top = [a for a in agents if a.parent_id is None and a.status in live]

        async def fire(agent_id: str) -> None:
            try:
                await asyncio.wait_for(rt.fire(agent_id), TEARDOWN_AGENT_TIMEOUT_S)
            except Exception as e:  # noqa: BLE001 - the head's stop takes it anyway
                log.warning("firing %s failed: %s", agent_id, e)

        await asyncio.gather(*(fire(a.id) for a in top))
        log.info("fired %d top-level agent(s)", len(top))

    asyncio.run(fire_all())
    log.info("teardown done in %.1f s", time.monotonic() - t0)


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
    args = parser.parse_args(argv)
    if args.step == "deploy":
        deploy(args.address, args.port, args.keys_file)
    else:
        teardown(args.address)
    return 0


if __name__ == "__main__":
    sys.exit(main())
