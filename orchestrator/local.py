"""A local cluster on loopback: a Ray head of its own and the HTTP API on Ray Serve.

``up()`` starts ``ray start --head --block`` as a detached process (a session of its own),
with every port on 127.0.0.1, waits until it answers, creates the recorder and deploys the
API (``serve_app.deploy``) on ``127.0.0.1:<api_port>``; ``down()`` stops exactly that
cluster. Both are idempotent. What they keep, under the data directory
(``ORCHESTRATOR_DATA_DIR``):

- ``local.json``: the running cluster (Ray address, API and dashboard URLs, the head's pid);
- ``api-keys``: the API's key file, ``default:sha256:<hex>`` (mode 0600);
- ``api-key``: the clear key of tenant ``default``, for clients (mode 0600);
- ``local.log``: the head's output and the deploy and teardown steps'.

The clear key is never printed or logged; ``LocalCluster`` keeps it out of its repr.

This module is the face; the files live in ``_local_files``, the head's processes in
``_local_head``, and the steps that connect to Ray (run as child processes) in ``_local_ray``.

Example:
    >>> from orchestrator import local                    # doctest: +SKIP
    >>> cluster = local.up(api_port=8000)                  # doctest: +SKIP
    >>> cluster.api_url, cluster.dashboard_url             # doctest: +SKIP
    >>> local.down()                                       # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._extras import require_runtime
from ._local_autoscale import Autoscale
from ._local_files import (
    CLIENT_KEY_FILE,
    KEYS_FILE,
    LOG_FILE,
    STATE_FILE,
    TENANT,
    data_dir_of,
    ensure_keys,
    locked,
    read_state,
    remove_state,
    write_state,
)
from ._local_head import (
    HOST,
    LOOPBACK_ENV,
    api_healthy,
    check_port,
    default_desktops,
    driver_env,
    head_alive,
    prune_ray_sessions,
    ray_temp_dir,
    reap_desktops,
    run_step,
    start_head,
    step_output,
    stop_head,
    wait_api,
    wait_head,
)
from .config import ENV_API_KEY, ENV_API_URL
from .errors import ConfigError, LocalClusterError

__all__ = [
    "CLIENT_KEY_FILE",
    "Autoscale",
    "HOST",
    "KEYS_FILE",
    "LOG_FILE",
    "LOOPBACK_ENV",
    "STATE_FILE",
    "TENANT",
    "LocalCluster",
    "LocalClusterError",
    "LocalNode",
    "current",
    "describe",
    "down",
    "driver_env",
    "ensure_keys",
    "nodes",
    "status_lines",
    "up",
]


@dataclass(frozen=True)
class LocalCluster:
    """A running local cluster: where its API, dashboard and Ray head answer."""

    api_url: str
    api_key: str = field(repr=False)
    dashboard_url: str
    ray_address: str
    data_dir: Path
    head_pid: int
    autoscale: Autoscale | None = None
    """How its worker nodes come and go (``up(autoscale=...)``); None: the head alone."""

    @property
    def key_file(self) -> Path:
        """The file holding ``api_key`` (mode 0600)."""
        return self.data_dir / CLIENT_KEY_FILE

    def healthy(self, timeout_s: float = 2.0) -> bool:
        """Whether the API answers ``/healthz``."""
        return api_healthy(self.api_url, timeout_s)


@dataclass(frozen=True)
class LocalNode:
    """A live node of a local cluster (the head, or a worker its autoscaler added)."""

    node_id: str
    head: bool
    desktops: float
    """Units of the ``desktop`` resource it declares."""
    address: str


def nodes(data_dir: Path | str | None = None, timeout_s: float = 30.0) -> list[LocalNode]:
    """The live nodes of the local cluster of ``data_dir``, head first (asked of its GCS
    by a child process, which does not connect as a driver). ``LocalClusterError`` when
    no cluster runs."""
    d = data_dir_of(data_dir)
    state = read_state(d)
    if state is None or not head_alive(state):
        raise LocalClusterError(f"no local cluster is running for {d}")
    out = step_output(d, ["nodes", "--address", state["ray_address"]], timeout_s, "listing nodes")
    return [LocalNode(**row) for row in json.loads(out)]


def _cluster(state: dict[str, Any], data_dir: Path) -> LocalCluster:
    key = (data_dir / CLIENT_KEY_FILE).read_text(encoding="utf-8").strip()
    return LocalCluster(
        api_url=state["api_url"],
        api_key=key,
        dashboard_url=state["dashboard_url"],
        ray_address=state["ray_address"],
        data_dir=data_dir,
        head_pid=int(state["head_pid"]),
        autoscale=Autoscale(**state["autoscale"]) if state.get("autoscale") else None,
    )


def current(data_dir: Path | str | None = None) -> LocalCluster | None:
    """The local cluster running for ``data_dir`` (default ``ORCHESTRATOR_DATA_DIR``), or
    None. Does not ask the API; see ``LocalCluster.healthy``."""
    d = data_dir_of(data_dir)
    try:
        state = read_state(d)
    except ConfigError:
        return None
    if state is None or not head_alive(state):
        return None
    try:
        return _cluster(state, d)
    except OSError:
        return None


def up(
    *,
    api_port: int = 8000,
    dashboard_port: int = 8265,
    desktops: int | None = None,
    data_dir: Path | str | None = None,
    timeout_s: float = 180.0,
    autoscale: Autoscale | None = None,
) -> LocalCluster:
    """Start a local Ray head and the HTTP API on 127.0.0.1, or return the running one.

    ``desktops`` units of the ``desktop`` resource are declared on the head (default: as
    many as fit in memory; with ``autoscale``, its ``head_desktops``). ``autoscale``: the
    head runs Ray's autoscaler, which adds worker nodes on this machine while agents wait
    for desktops and removes them once idle (``_local_autoscale``). Idempotent: when
    ``local.json`` names a live head, that cluster is returned (the API is deployed again
    first if it does not answer). Raises ``LocalClusterError`` (after stopping what it
    started) when the cluster does not come up within ``timeout_s``.
    """
    require_runtime("orchestrator up")  # the head runs Ray, Docker and the agents
    d = data_dir_of(data_dir)
    deadline = time.monotonic() + timeout_s
    with locked(d):
        keys_file, _ = ensure_keys(d)
        state = read_state(d)
        if state is not None and head_alive(state):
            if not api_healthy(state["api_url"]):
                _deploy(state, keys_file, deadline)
            return _cluster(state, d)
        if state is not None:  # its head is gone: clear what it left
            stop_head(state, time.monotonic() + 30)
            reap_desktops()
            remove_state(d)

        check_port(api_port, "--port, or api_port=")
        check_port(dashboard_port, "--dashboard-port, or dashboard_port=")
        if desktops is None:
            desktops = autoscale.head_desktops if autoscale else default_desktops()
        proc, state = start_head(
            d, dashboard_port=dashboard_port, desktops=desktops, autoscale=autoscale
        )
        state["api_url"] = f"http://{HOST}:{api_port}"
        state["api_port"] = api_port
        write_state(d, state)  # first, so that `down` finds a head that failed half-way
        try:
            wait_head(proc, state, deadline)
            _deploy(state, keys_file, deadline)
        except BaseException:
            stop_head(state, time.monotonic() + 30)
            remove_state(d)
            raise
        return _cluster(state, d)


def _deploy(state: dict[str, Any], keys_file: Path, deadline: float) -> None:
    d = Path(state["data_dir"])
    args = ["deploy", "--address", state["ray_address"], "--port", str(state["api_port"])]
    run_step(d, [*args, "--keys-file", str(keys_file)], deadline, "deploying the API")
    wait_api(state["api_url"], deadline, d)


def down(data_dir: Path | str | None = None, timeout_s: float = 120.0) -> bool:
    """Stop the local cluster of ``data_dir``: the API, the agents (their desktops go with
    them), the Ray head and everything it started. Returns whether a cluster was running.

    Only the processes of the head named in ``local.json`` are stopped, never another Ray
    cluster on this machine. The key files are kept, so the key stays the same next time.
    """
    d = data_dir_of(data_dir)
    deadline = time.monotonic() + timeout_s
    with locked(d):
        state = read_state(d)
        if state is None:
            return False
        running = head_alive(state)
        if running:
            # Gracefully first, with part of the time: Serve, then the top-level agents.
            step_deadline = time.monotonic() + timeout_s * 0.6
            try:
                run_step(
                    d,
                    ["teardown", "--address", state["ray_address"]],
                    step_deadline,
                    "stopping the API and the agents",
                )
            except LocalClusterError:
                pass  # stopping the head below takes everything with it anyway
        stop_head(state, deadline)
        reap_desktops()
        prune_ray_sessions(Path(state.get("ray_temp_dir") or ray_temp_dir(d)))
        remove_state(d)
        return running


def status_lines(api_url: str, data_dir: Path | str | None = None) -> list[str]:
    """For ``orchestrator status``: the dashboard and the live nodes of the local cluster
    whose API is ``api_url`` (nothing for another API)."""
    cluster = current(data_dir)
    if cluster is None or api_url.rstrip("/") != cluster.api_url:
        return []
    lines = [f"dashboard: {cluster.dashboard_url}"]
    try:
        found = nodes(cluster.data_dir)
    except LocalClusterError as e:
        return [*lines, f"nodes: unknown ({e})"]
    lines.append(f"nodes: {len(found)}")
    for node in found:
        kind = "head  " if node.head else "worker"
        lines.append(f"  {kind} {node.node_id}  desktops {node.desktops:g}")
    return lines


def describe(cluster: LocalCluster) -> list[str]:
    """Lines telling where the cluster answers and how to use it (never the key itself)."""
    scaling = []
    if (opts := cluster.autoscale) is not None:
        scaling = [
            f"autoscale  0-{opts.max_workers} workers of {opts.worker_desktops} desktops, "
            f"removed after {opts.idle_timeout_s:g} s idle (orchestrator status shows the nodes)"
        ]
    return [
        f"api        {cluster.api_url}  (OpenAPI at {cluster.api_url}/docs)",
        f"dashboard  {cluster.dashboard_url}  (it asks for Ray's token: ray get-auth-token)",
        f"ray        {cluster.ray_address}",
        *scaling,
        f"api key    tenant {TENANT!r}, in {cluster.key_file} (mode 0600)",
        "",
        "The CLI finds this cluster by itself (orchestrator status, agents, tasks, ...).",
        "Elsewhere:",
        f"  export {ENV_API_URL}={cluster.api_url}",
        f'  export {ENV_API_KEY}="$(cat {cluster.key_file})"',
        "Python:   from orchestrator.sdk import start_local; api = start_local()",
        "Stop it:  orchestrator down",
    ]
