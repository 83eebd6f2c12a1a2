"""What the integration suites that deploy the API share: a free loopback port, a
deadline-bound wait, the API deployed in the session's Ray cluster with a keys file, and a
scenario run in a child process with a Ray cluster of its own."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def until(probe: Callable[[], T], *, timeout_s: float, what: str) -> T:
    """Poll ``probe`` until it returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not met within {timeout_s} s; last: {last!r}")
        time.sleep(0.1)  # polling interval of a deadline-bound wait


@contextmanager
def deployed_api(keys: Iterable[tuple[str, str]], directory: Path) -> Iterator[str]:
    """The API deployed on a free loopback port, its keys file (``tenant:key`` or
    ``tenant:sha256:<hex>`` lines, one per pair) written in ``directory``; yields its URL once
    ``/healthz`` answers 200, and shuts Serve down afterwards."""
    from ray import serve

    from serve_app import deploy

    keys_file = directory / "api-keys"
    keys_file.write_text("".join(f"{tenant}:{key}\n" for tenant, key in keys))
    url = deploy(port=free_port(), keys_file=str(keys_file))
    try:
        with httpx.Client(base_url=url, timeout=5) as c:

            def healthy() -> bool:
                try:
                    return c.get("/healthz").status_code == 200
                except httpx.TransportError:
                    return False

            until(healthy, timeout_s=60, what="/healthz")
        yield url
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]


def run_scenario(script: str, tmp_path: Path, desktop_image: str) -> dict[str, Any]:
    """Run ``script`` (a scenario that makes a Ray cluster of its own, e.g. two raylets with
    ``ray.cluster_utils.Cluster``) in a child process from the repository's root, with a data
    dir of its own and nothing of this process's cluster; the JSON object it prints last."""
    env = {k: v for k, v in os.environ.items() if k not in SCENARIO_UNSET}
    env.update(
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",  # Ray's address detection gives 127.0.0.1
        ORCHESTRATOR_DATA_DIR=str(tmp_path / "data"),
        ORCHESTRATOR_DESKTOP_IMAGE=desktop_image,
    )
    (tmp_path / "data").mkdir()
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=SCENARIO_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


SCENARIO_UNSET = ("RAY_ADDRESS", "ORCHESTRATOR_LIVE_VIEW_PROXY")
"""What a scenario does not inherit: this process's cluster, and settings it sets per node."""
SCENARIO_TIMEOUT_S = 280
