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

Example:
    >>> from orchestrator import local                    # doctest: +SKIP
    >>> cluster = local.up(api_port=8000)                  # doctest: +SKIP
    >>> cluster.api_url, cluster.dashboard_url             # doctest: +SKIP
    >>> local.down()                                       # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._flock import file_lock
from .config import RAY_CLUSTER_ENV, RAY_LOOPBACK_ENV
from .errors import ConfigError, OrchestratorError

__all__ = [
    "CLIENT_KEY_FILE",
    "HOST",
    "KEYS_FILE",
    "STATE_FILE",
    "TENANT",
    "LocalCluster",
    "LocalClusterError",
    "current",
    "down",
    "driver_env",
    "ensure_keys",
    "up",
]

HOST = "127.0.0.1"
TENANT = "default"
"""The tenant of the key ``up()`` writes."""
STATE_FILE = "local.json"
KEYS_FILE = "api-keys"
CLIENT_KEY_FILE = "api-key"
LOG_FILE = "local.log"

LOOPBACK_ENV = RAY_LOOPBACK_ENV
"""Keeps Ray on loopback (``config.RAY_LOOPBACK_ENV``)."""

_POLL_S = 0.2
_heads: dict[int, subprocess.Popen[bytes]] = {}
"""Heads this process started, so that their exit status is collected (no zombies)."""


class LocalClusterError(OrchestratorError):
    """The local cluster failed to start or to stop."""


@dataclass(frozen=True)
class LocalCluster:
    """A running local cluster: where its API, dashboard and Ray head answer."""

    api_url: str
    api_key: str = field(repr=False)
    dashboard_url: str
    ray_address: str
    data_dir: Path
    head_pid: int

    @property
    def key_file(self) -> Path:
        """The file holding ``api_key`` (mode 0600)."""
        return self.data_dir / CLIENT_KEY_FILE

    def healthy(self, timeout_s: float = 2.0) -> bool:
        """Whether the API answers ``/healthz``."""
        return _api_healthy(self.api_url, timeout_s)


# ---------------------------------------------------------------------- files


def _data_dir(data_dir: Path | str | None) -> Path:
    if data_dir is None:
        from .config import settings

        data_dir = settings().data_dir
    return Path(data_dir).expanduser().resolve()


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by its owner only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def ensure_keys(data_dir: Path | str | None = None) -> tuple[Path, str]:
    """The API key file (hashed) and the clear key of tenant ``default``, made if missing.

    The clear key lives in ``api-key``; ``api-keys`` holds its sha256 digest as the line
    ``default:sha256:<hex>`` beside any other tenants' lines someone added. Both are 0600.
    Returns the key file's path and the clear key.
    """
    d = _data_dir(data_dir)
    client_file, keys_file = d / CLIENT_KEY_FILE, d / KEYS_FILE
    key = client_file.read_text(encoding="utf-8").strip() if client_file.exists() else ""
    if not key:
        key = secrets.token_urlsafe(32)
        _write_private(client_file, key + "\n")
    elif client_file.stat().st_mode & 0o077:
        client_file.chmod(0o600)
    line = f"{TENANT}:sha256:{hashlib.sha256(key.encode('utf-8')).hexdigest()}"
    lines = keys_file.read_text(encoding="utf-8").splitlines() if keys_file.exists() else []
    if line not in lines:
        others = [x for x in lines if not x.strip().startswith(f"{TENANT}:")]
        _write_private(keys_file, "\n".join([*others, line]) + "\n")
    elif keys_file.stat().st_mode & 0o077:
        keys_file.chmod(0o600)
    return keys_file, key


def _read_state(data_dir: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads((data_dir / STATE_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read {data_dir / STATE_FILE}: {e}") from None
    return state


def _write_state(data_dir: Path, state: dict[str, Any]) -> None:
    _write_private(data_dir / STATE_FILE, json.dumps(state, indent=2) + "\n")


def _remove_state(data_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (data_dir / STATE_FILE).unlink()


def _locked(data_dir: Path) -> contextlib.AbstractContextManager[None]:
    """One ``up``/``down`` at a time per data directory."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return file_lock(data_dir / ".local.lock")


def _cluster(state: dict[str, Any], data_dir: Path) -> LocalCluster:
    key = (data_dir / CLIENT_KEY_FILE).read_text(encoding="utf-8").strip()
    return LocalCluster(
        api_url=state["api_url"],
        api_key=key,
        dashboard_url=state["dashboard_url"],
        ray_address=state["ray_address"],
        data_dir=data_dir,
        head_pid=int(state["head_pid"]),
    )


# ---------------------------------------------------------------------- processes


def _stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (state, ppid, pgrp, session, ...), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def _reap_child(pid: int) -> None:
    proc = _heads.get(pid)
    if proc is not None and proc.poll() is not None:
        del _heads[pid]


def _head_alive(state: dict[str, Any]) -> bool:
    """Whether the head named by the state still runs (the same process, not a reused pid)."""
    from .desktop._owner import owner_is_alive

    pid = int(state["head_pid"])
    _reap_child(pid)
    fields = _stat(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    return owner_is_alive(state["head_owner"])


def _session_members(sid: int) -> list[int]:
    """Live processes of session ``sid`` (the head and everything Ray started under it)."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields and fields[0] not in ("Z", "X") and int(fields[3]) == sid:
                members.append(int(entry))
    return members


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _check_port(port: int, option: str) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            raise ConfigError(
                f"port {port} on {HOST} is in use: choose another ({option})"
            ) from None


def _api_healthy(url: str, timeout_s: float = 2.0) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/healthz", timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False


def driver_env() -> dict[str, str]:
    """What a process must have in its environment to connect to a local cluster's Ray
    (as a driver): loopback addresses, and the head's token authentication."""
    # The head and its clients agree on Ray's token authentication (the token in
    # ~/.ray/auth_token, made if missing): a client given an address does not enable it.
    return {**LOOPBACK_ENV, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "token")}


def _child_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(driver_env())
    env["ORCHESTRATOR_DATA_DIR"] = str(data_dir)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    for name, value in RAY_CLUSTER_ENV.items():
        env.setdefault(name, value)
    return env


def _log_tail(data_dir: Path, lines: int = 15) -> str:
    try:
        text = (data_dir / LOG_FILE).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _ray_temp_dir(data_dir: Path) -> Path:
    # Ray's own directory for this cluster, not /tmp/ray: a `ray start` records its address
    # there, and a later plain `ray.init()` on this machine would join this cluster. Short,
    # because Ray's unix socket paths live under it.
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"orchestrator-ray-{digest}"


def _default_desktops() -> int:
    # As actors.init_ray: as many as fit in 60% of memory at ~300 MB per agent and desktop.
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(2, int(mem * 0.6 / (300 * 2**20)))


def _run_step(data_dir: Path, args: list[str], deadline: float, what: str) -> None:
    """Run a step of ``orchestrator._local_ray`` (it connects to Ray) in a child process."""
    remaining = max(1.0, deadline - time.monotonic())
    with open(data_dir / LOG_FILE, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator._local_ray", *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_child_env(data_dir),
        )
        try:
            code = proc.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise LocalClusterError(
                f"{what} took longer than its deadline; see {data_dir / LOG_FILE}:\n"
                + _log_tail(data_dir)
            ) from None
    if code != 0:
        raise LocalClusterError(
            f"{what} failed (exit status {code}); see {data_dir / LOG_FILE}:\n"
            + _log_tail(data_dir)
        )


def _ensure_ray_token(data_dir: Path) -> None:
    """Make Ray's auth token (``~/.ray/auth_token``) if token mode has none to use."""
    env = _child_env(data_dir)
    if env["RAY_AUTH_MODE"].lower() != "token" or env.get("RAY_AUTH_TOKEN"):
        return
    path = env.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")
    if Path(path).exists():
        return
    cmd = [sys.executable, "-m", "ray.scripts.scripts", "get-auth-token", "--generate"]
    # It prints the token: to nowhere.
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)


def _start_head(
    data_dir: Path, *, dashboard_port: int, desktops: int
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    from .desktop._owner import process_owner

    _ensure_ray_token(data_dir)
    port = _free_port()
    temp_dir = _ray_temp_dir(data_dir)
    temp_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        (temp_dir / "ray_current_cluster").unlink()
    cmd = [
        sys.executable,
        "-m",
        "ray.scripts.scripts",
        "start",
        "--head",
        "--block",
        f"--node-ip-address={HOST}",
        f"--port={port}",
        f"--ray-client-server-port={_free_port()}",
        f"--dashboard-host={HOST}",
        f"--dashboard-port={dashboard_port}",
        f"--dashboard-agent-listen-port={_free_port()}",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
        "--log-style=record",
        "--resources=" + json.dumps({"desktop": desktops}),
    ]
    env = _child_env(data_dir)
    # `down` stops Serve and the agents itself first; Ray's drain on SIGTERM (for Serve to
    # move replicas to other nodes) would only wait out its 30 s on a one-node cluster.
    env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] = "0"
    with open(data_dir / LOG_FILE, "ab") as log:
        log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting the Ray head\n".encode())
        log.flush()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            cwd=str(data_dir),
        )
    _heads[proc.pid] = proc
    state = {
        "ray_address": f"{HOST}:{port}",
        "dashboard_url": f"http://{HOST}:{dashboard_port}",
        "head_pid": proc.pid,
        "head_owner": process_owner(proc.pid),
        "data_dir": str(data_dir),
        "ray_temp_dir": str(temp_dir),
        "desktops": desktops,
        "started_at": time.time(),
    }
    return proc, state


def _wait_head(proc: subprocess.Popen[bytes], state: dict[str, Any], deadline: float) -> None:
    """Until the head has written its address (it does once its node is up)."""
    address_file = Path(state["ray_temp_dir"]) / "ray_current_cluster"
    data_dir = Path(state["data_dir"])
    while True:
        if proc.poll() is not None:
            raise LocalClusterError(
                f"the Ray head exited with status {proc.returncode}; see "
                f"{data_dir / LOG_FILE}:\n" + _log_tail(data_dir)
            )
        with contextlib.suppress(OSError):
            if address_file.read_text().strip() == state["ray_address"]:
                return
        if time.monotonic() >= deadline:
            raise LocalClusterError(
                f"the Ray head did not start in time; see {data_dir / LOG_FILE}:\n"
                + _log_tail(data_dir)
            )
        time.sleep(_POLL_S)  # polling interval of a deadline-bound wait


def _wait_api(url: str, deadline: float, data_dir: Path) -> None:
    while not _api_healthy(url):
        if time.monotonic() >= deadline:
            raise LocalClusterError(
                f"the API at {url} did not answer in time; see {data_dir / LOG_FILE}:\n"
                + _log_tail(data_dir)
            )
        time.sleep(_POLL_S)  # polling interval of a deadline-bound wait


def _stop_head(state: dict[str, Any], deadline: float) -> None:
    """SIGTERM the head (it stops what it started); SIGKILL its session at the deadline.

    The session's id is the head's pid (it was started in a session of its own); its
    processes are stopped only while that pid is still the head, or is no session leader
    (nothing else can have started a session with that id).
    """
    from .desktop._owner import owner_is_alive

    pid = int(state["head_pid"])
    _reap_child(pid)
    fields = _stat(pid)
    if fields is not None and not owner_is_alive(state["head_owner"]) and int(fields[3]) == pid:
        return  # the pid leads another session now: nothing of the head's is left
    if _head_alive(state):
        os.kill(pid, signal.SIGTERM)
    else:  # the head died and left some of its processes
        for member in _session_members(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(member, signal.SIGTERM)
    killed = False
    while True:
        _reap_child(pid)
        members = _session_members(pid)
        if not members:
            return
        if time.monotonic() >= deadline:
            if killed:
                raise LocalClusterError(
                    f"processes of the Ray head's session {pid} survived SIGKILL: {members}"
                )
            for member in members:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(member, signal.SIGKILL)
            killed, deadline = True, time.monotonic() + 10
        time.sleep(_POLL_S)  # polling interval of a deadline-bound wait


def _reap_desktops() -> list[str]:
    """Remove desktops whose owner is gone: the stopped cluster's agents' among them."""
    from .desktop import reap

    try:
        return reap(min_age_s=0)
    except OrchestratorError:
        return []  # no Docker engine: there are no desktops to remove either


# ---------------------------------------------------------------------- the API


def current(data_dir: Path | str | None = None) -> LocalCluster | None:
    """The local cluster running for ``data_dir`` (default ``ORCHESTRATOR_DATA_DIR``), or
    None. Does not ask the API; see ``LocalCluster.healthy``."""
    d = _data_dir(data_dir)
    try:
        state = _read_state(d)
    except ConfigError:
        return None
    if state is None or not _head_alive(state):
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
) -> LocalCluster:
    """Start a local Ray head and the HTTP API on 127.0.0.1, or return the running one.

    ``desktops`` units of the ``desktop`` resource are declared (default: as many as fit in
    memory). Idempotent: when ``local.json`` names a live head, that cluster is returned
    (the API is deployed again first if it does not answer). Raises ``LocalClusterError``
    (after stopping what it started) when the cluster does not come up within ``timeout_s``.
    """
    d = _data_dir(data_dir)
    deadline = time.monotonic() + timeout_s
    with _locked(d):
        keys_file, _ = ensure_keys(d)
        state = _read_state(d)
        if state is not None and _head_alive(state):
            if not _api_healthy(state["api_url"]):
                _deploy(state, keys_file, deadline)
            return _cluster(state, d)
        if state is not None:  # its head is gone: clear what it left
            _stop_head(state, time.monotonic() + 30)
            _reap_desktops()
            _remove_state(d)

        _check_port(api_port, "--port, or api_port=")
        _check_port(dashboard_port, "--dashboard-port, or dashboard_port=")
        proc, state = _start_head(
            d, dashboard_port=dashboard_port, desktops=desktops or _default_desktops()
        )
        state["api_url"] = f"http://{HOST}:{api_port}"
        state["api_port"] = api_port
        _write_state(d, state)  # first, so that `down` finds a head that failed half-way
        try:
            _wait_head(proc, state, deadline)
            _deploy(state, keys_file, deadline)
        except BaseException:
            _stop_head(state, time.monotonic() + 30)
            _remove_state(d)
            raise
        return _cluster(state, d)


def _deploy(state: dict[str, Any], keys_file: Path, deadline: float) -> None:
    d = Path(state["data_dir"])
    args = ["deploy", "--address", state["ray_address"], "--port", str(state["api_port"])]
    _run_step(d, [*args, "--keys-file", str(keys_file)], deadline, "deploying the API")
    _wait_api(state["api_url"], deadline, d)


def down(data_dir: Path | str | None = None, timeout_s: float = 120.0) -> bool:
    """Stop the local cluster of ``data_dir``: the API, the agents (their desktops go with
    them), the Ray head and everything it started. Returns whether a cluster was running.

    Only the processes of the head named in ``local.json`` are stopped, never another Ray
    cluster on this machine. The key files are kept, so the key stays the same next time.
    """
    d = _data_dir(data_dir)
    deadline = time.monotonic() + timeout_s
    with _locked(d):
        state = _read_state(d)
        if state is None:
            return False
        running = _head_alive(state)
        if running:
            # Gracefully first, with part of the time: Serve, then the top-level agents.
            step_deadline = time.monotonic() + timeout_s * 0.6
            try:
                _run_step(
                    d,
                    ["teardown", "--address", state["ray_address"]],
                    step_deadline,
                    "stopping the API and the agents",
                )
            except LocalClusterError:
                pass  # stopping the head below takes everything with it anyway
        _stop_head(state, deadline)
        _reap_desktops()
        _prune_ray_sessions(Path(state.get("ray_temp_dir") or _ray_temp_dir(d)))
        _remove_state(d)
        return running


def _prune_ray_sessions(temp_dir: Path) -> None:
    """Keep the last Ray session's directory (its logs), remove older ones."""
    latest = temp_dir / "session_latest"
    keep = latest.resolve().name if latest.is_symlink() else None
    for p in temp_dir.glob("session_2*"):
        if p.name != keep and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)


def describe(cluster: LocalCluster) -> list[str]:
    """Lines telling where the cluster answers and how to use it (never the key itself)."""
    return [
        f"api        {cluster.api_url}  (OpenAPI at {cluster.api_url}/docs)",
        f"dashboard  {cluster.dashboard_url}  (it asks for Ray's token: ray get-auth-token)",
        f"ray        {cluster.ray_address}",
        f"api key    tenant {TENANT!r}, in {cluster.key_file} (mode 0600)",
        "",
        "The CLI finds this cluster by itself (orchestrator status, agents, tasks, ...).",
        "Elsewhere:",
        f"  export ORCHESTRATOR_API_URL={cluster.api_url}",
        f'  export ORCHESTRATOR_API_KEY="$(cat {cluster.key_file})"',
        "Python:   from orchestrator.sdk import start_local; api = start_local()",
        "Stop it:  orchestrator down",
    ]
