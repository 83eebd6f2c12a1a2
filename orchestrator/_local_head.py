"""The processes of a local cluster (``orchestrator.local``): its Ray head, started as
``ray start --head --block`` in a session of its own with every port on 127.0.0.1, the
child steps that connect to it (``orchestrator._local_ray``), and stopping exactly that
head's session, never another Ray on this machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ._local_autoscale import Autoscale, head_env, write_config
from ._local_files import LOG_FILE, log_tail
from .config import RAY_CLUSTER_ENV, RAY_LOOPBACK_ENV, ray_env
from .errors import ConfigError, LocalClusterError, OrchestratorError

__all__ = [
    "HOST",
    "LOOPBACK_ENV",
    "api_healthy",
    "check_port",
    "default_desktops",
    "driver_env",
    "head_alive",
    "heads",
    "prune_ray_sessions",
    "ray_temp_dir",
    "reap_desktops",
    "run_step",
    "session_members",
    "start_head",
    "step_output",
    "stop_head",
    "wait_api",
    "wait_head",
]

HOST = "127.0.0.1"

LOOPBACK_ENV = RAY_LOOPBACK_ENV
"""Keeps Ray on loopback (``config.RAY_LOOPBACK_ENV``)."""

_POLL_S = 0.2
heads: dict[int, subprocess.Popen[bytes]] = {}
"""Heads this process started, so that their exit status is collected (no zombies)."""


# ---------------------------------------------------------------------- /proc


def _stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (state, ppid, pgrp, session, ...), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def _reap_child(pid: int) -> None:
    proc = heads.get(pid)
    if proc is not None and proc.poll() is not None:
        del heads[pid]


def head_alive(state: dict[str, Any]) -> bool:
    """Whether the head named by the state still runs (the same process, not a reused pid)."""
    from .desktop import owner_is_alive

    pid = int(state["head_pid"])
    _reap_child(pid)
    fields = _stat(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    return owner_is_alive(state["head_owner"])


def session_members(sid: int) -> list[int]:
    """Live processes of session ``sid`` (the head and everything Ray started under it)."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields and fields[0] not in ("Z", "X") and int(fields[3]) == sid:
                members.append(int(entry))
    return members


# ---------------------------------------------------------------------- ports and the API


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def check_port(port: int, option: str) -> None:
    """``ConfigError`` naming ``option`` when ``port`` on 127.0.0.1 is taken."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            raise ConfigError(
                f"port {port} on {HOST} is in use: choose another ({option})"
            ) from None


def api_healthy(url: str, timeout_s: float = 2.0) -> bool:
    """Whether the API at ``url`` answers ``/healthz``."""
    import httpx

    try:
        return httpx.get(f"{url}/healthz", timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False


def wait_api(url: str, deadline: float, data_dir: Path) -> None:
    """Until the API at ``url`` answers (``LocalClusterError`` at the deadline)."""
    while not api_healthy(url):
        if time.monotonic() >= deadline:
            raise LocalClusterError(
                f"the API at {url} did not answer in time; see {data_dir / LOG_FILE}:\n"
                + log_tail(data_dir)
            )
        time.sleep(_POLL_S)  # polling interval of a deadline-bound wait


# ---------------------------------------------------------------------- environment


def driver_env() -> dict[str, str]:
    """What a process must have in its environment to connect to a local cluster's Ray
    (as a driver): loopback addresses, and the head's token authentication."""
    # The head and its clients agree on Ray's token authentication (the token in
    # ~/.ray/auth_token, made if missing): a client given an address does not enable it.
    return {**LOOPBACK_ENV, "RAY_AUTH_MODE": ray_env().auth_mode}


def _child_env(data_dir: Path) -> dict[str, str]:
    """This process's environment for the head and the steps: without ``RAY_ADDRESS``, with
    ``driver_env()``, the data directory and the cluster's defaults."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(driver_env())
    env["ORCHESTRATOR_DATA_DIR"] = str(data_dir)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    for name, value in RAY_CLUSTER_ENV.items():
        env.setdefault(name, value)
    return env


def ray_temp_dir(data_dir: Path) -> Path:
    """Ray's own directory for this cluster, not /tmp/ray: a ``ray start`` records its address
    there, and a later plain ``ray.init()`` on this machine would join this cluster. Short,
    because Ray's unix socket paths live under it."""
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"orchestrator-ray-{digest}"


def default_desktops() -> int:
    """As ``actors.init_ray``: as many as fit in 60% of memory at ~300 MB per agent and
    desktop."""
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(2, int(mem * 0.6 / (300 * 2**20)))


# ---------------------------------------------------------------------- steps and the head


def run_step(data_dir: Path, args: list[str], deadline: float, what: str) -> None:
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
                + log_tail(data_dir)
            ) from None
    if code != 0:
        raise LocalClusterError(
            f"{what} failed (exit status {code}); see {data_dir / LOG_FILE}:\n" + log_tail(data_dir)
        )


def step_output(data_dir: Path, args: list[str], timeout_s: float, what: str) -> str:
    """Run a step of ``orchestrator._local_ray`` and return what it printed."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "orchestrator._local_ray", *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=_child_env(data_dir),
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise LocalClusterError(f"{what} took longer than {timeout_s:g} s") from None
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-5:]
        raise LocalClusterError(f"{what} failed: " + " | ".join(tail))
    return done.stdout.decode()


def _ensure_ray_token(data_dir: Path) -> None:
    """Make Ray's auth token (``~/.ray/auth_token``) if token mode has none to use."""
    ray = ray_env()
    if ray.auth_mode.lower() != "token" or ray.auth_token is not None:
        return
    path = ray.auth_token_path or Path.home() / ".ray" / "auth_token"
    if path.exists():
        return
    cmd = [sys.executable, "-m", "ray.scripts.scripts", "get-auth-token", "--generate"]
    # It prints the token: to nowhere.
    subprocess.run(
        cmd,
        env=_child_env(data_dir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )


def start_head(
    data_dir: Path, *, dashboard_port: int, desktops: int, autoscale: Autoscale | None = None
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Start the Ray head (detached, a session of its own); its process and its state.

    With ``autoscale``, the head runs Ray's autoscaler with the fake multi-node provider
    (``_local_autoscale``): worker nodes are raylets it starts on this machine, in this
    session, as agents wait for desktops.
    """
    from .desktop import process_owner

    _ensure_ray_token(data_dir)
    port = _free_port()
    temp_dir = ray_temp_dir(data_dir)
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
    if autoscale is not None:
        config = write_config(data_dir, autoscale, f"{HOST}:{port}")
        cmd.append(f"--autoscaling-config={config}")
        env.update(head_env(autoscale))
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
    heads[proc.pid] = proc
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
    if autoscale is not None:
        state["autoscale"] = autoscale.model_dump()
    return proc, state


def wait_head(proc: subprocess.Popen[bytes], state: dict[str, Any], deadline: float) -> None:
    """Until the head has written its address (it does once its node is up)."""
    address_file = Path(state["ray_temp_dir"]) / "ray_current_cluster"
    data_dir = Path(state["data_dir"])
    while True:
        if proc.poll() is not None:
            raise LocalClusterError(
                f"the Ray head exited with status {proc.returncode}; see "
                f"{data_dir / LOG_FILE}:\n" + log_tail(data_dir)
            )
        with contextlib.suppress(OSError):
            if address_file.read_text().strip() == state["ray_address"]:
                return
        if time.monotonic() >= deadline:
            raise LocalClusterError(
                f"the Ray head did not start in time; see {data_dir / LOG_FILE}:\n"
                + log_tail(data_dir)
            )
        time.sleep(_POLL_S)  # polling interval of a deadline-bound wait


def stop_head(state: dict[str, Any], deadline: float) -> None:
    """SIGTERM the head (it stops what it started); SIGKILL its session at the deadline.

    The session's id is the head's pid (it was started in a session of its own); its
    processes are stopped only while that pid is still the head, or is no session leader
    (nothing else can have started a session with that id). Once the head has exited, what
    is left of its session (an autoscaler's worker nodes: their raylets outlive the
    autoscaler that started them) is sent SIGTERM at once, not only at the deadline.
    """
    from .desktop import owner_is_alive

    pid = int(state["head_pid"])
    _reap_child(pid)
    fields = _stat(pid)
    if fields is not None and not owner_is_alive(state["head_owner"]) and int(fields[3]) == pid:
        return  # the pid leads another session now: nothing of the head's is left
    orphans_told = not head_alive(state)
    if not orphans_told:
        os.kill(pid, signal.SIGTERM)
    else:  # the head died and left some of its processes
        _signal_all(session_members(pid), signal.SIGTERM)
    killed = False
    while True:
        _reap_child(pid)
        members = session_members(pid)
        if not members:
            return
        if not orphans_told and pid not in members:
            _signal_all(members, signal.SIGTERM)
            orphans_told = True
        if time.monotonic() >= deadline:
            if killed:
                raise LocalClusterError(
                    f"processes of the Ray head's session {pid} survived SIGKILL: {members}"
                )
            _signal_all(members, signal.SIGKILL)
            killed, deadline = True, time.monotonic() + 10
        time.sleep(_POLL_S)  # polling interval of a deadline-bound wait


def _signal_all(pids: list[int], sig: signal.Signals) -> None:
    for member in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, sig)


def reap_desktops() -> list[str]:
    """Remove desktops whose owner is gone: the stopped cluster's agents' among them."""
    from .desktop import reap

    try:
        return reap(min_age_s=0)
    except OrchestratorError:
        return []  # no Docker engine: there are no desktops to remove either


def prune_ray_sessions(temp_dir: Path) -> None:
    """Keep the last Ray session's directory (its logs), remove older ones."""
    latest = temp_dir / "session_latest"
    keep = latest.resolve().name if latest.is_symlink() else None
    for p in temp_dir.glob("session_2*"):
        if p.name != keep and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
