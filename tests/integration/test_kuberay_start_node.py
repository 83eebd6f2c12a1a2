"""examples/kuberay/start-node.sh, the Ray container's command on KubeRay, against the real
Docker engine: a worker runs KubeRay's `ray start` (handed over in KUBERAY_GEN_RAY_START_CMD)
only once the engine answers at DOCKER_HOST and the desktop image is in it, so a node the
autoscaler adds declares its `desktop` units only when it can start desktops. Without an
engine or an image it gives up at its deadline, saying what it waited for, and never starts
Ray. (The command it hands over to is KubeRay's; here a marker command stands in for it.)"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.integration.serve_api import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
START = ROOT / "examples" / "kuberay" / "start-node.sh"
VENV_BIN = Path(sys.executable).parent


def _run(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    marker = tmp_path / "ray-start-ran"
    full = {
        "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "KUBERAY_GEN_RAY_START_CMD": f'echo "$ORCHESTRATOR_DESKTOP_IMAGE" > {marker}',
        "ORCHESTRATOR_RUNTIME_DIR": str(tmp_path / "run"),
        "ORCHESTRATOR_NODE_SETUP_TIMEOUT_S": "3",
        **env,
    }
    done = subprocess.run(
        [str(START), "worker"], env=full, capture_output=True, text=True, timeout=60, check=False
    )
    return done, marker


def _docker_host() -> str:
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


def test_a_worker_starts_ray_once_its_engine_and_image_are_there(
    tmp_path: Path, desktop_image: str
) -> None:
    done, marker = _run(
        tmp_path, DOCKER_HOST=_docker_host(), ORCHESTRATOR_DESKTOP_IMAGE=desktop_image
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert marker.read_text().strip() == desktop_image  # the hand-over ran, with our env
    lines = done.stdout.splitlines()
    engine = next(i for i, line in enumerate(lines) if "the Docker engine" in line)
    image = next(i for i, line in enumerate(lines) if "the desktop image" in line)
    start = next(i for i, line in enumerate(lines) if "starting Ray" in line)
    assert engine < image < start, lines
    assert (tmp_path / "run").is_dir()  # the desktops' socket directory


def test_without_an_engine_a_worker_gives_up_and_never_starts_ray(
    tmp_path: Path, desktop_image: str
) -> None:
    done, marker = _run(
        tmp_path,
        DOCKER_HOST=f"unix://{tmp_path}/no-engine.sock",
        ORCHESTRATOR_DESKTOP_IMAGE=desktop_image,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "gave up after 3 s waiting for the Docker engine" in done.stderr
    assert not marker.exists()


def test_without_the_desktop_image_a_worker_gives_up_and_never_starts_ray(
    tmp_path: Path,
) -> None:
    # A name no registry here can serve (none is reachable, and this one is reserved).
    missing = "registry.invalid/orchestrator/desktop:missing"
    done, marker = _run(tmp_path, DOCKER_HOST=_docker_host(), ORCHESTRATOR_DESKTOP_IMAGE=missing)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"waiting for the desktop image {missing}" in done.stderr
    assert not marker.exists()


def test_the_role_is_required(tmp_path: Path) -> None:
    done = subprocess.run([str(START)], capture_output=True, text=True, timeout=10, check=False)
    assert done.returncode == 2 and "usage" in done.stderr


def _stop_session(sid: int, deadline_s: float = 30.0) -> None:
    """End every process of session ``sid`` (the script, Ray and the API it started), by pid."""
    from orchestrator._local_head import session_members

    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in session_members(sid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + deadline_s
        while session_members(sid) and time.monotonic() < deadline:
            time.sleep(0.2)  # polling a deadline-bound wait
        if not session_members(sid):
            return


def _children(pid: int) -> list[tuple[int, str]]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                out.append((int(entry), cmdline.decode(errors="replace")))
    return out


def _api_pid(script_pid: int) -> int:
    (api,) = [pid for pid, cmd in _children(script_pid) if "orchestrator serve" in cmd]
    return api


def _kill_the_api(proc: subprocess.Popen[bytes]) -> None:
    os.kill(_api_pid(proc.pid), signal.SIGKILL)


def _terminate_the_container(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGTERM)  # as Kubernetes does to the container's first process


@pytest.mark.parametrize("ending", [_kill_the_api, _terminate_the_container])
def test_the_head_starts_ray_then_the_api_and_ends_with_either(
    tmp_path: Path, ending: Callable[[subprocess.Popen[bytes]], None]
) -> None:
    """The head's flow, on a real Ray: KubeRay's `ray start --head --block` (its command as
    KubeRay makes it, on loopback ports of our own), the API once Ray answers, reachable with
    a tenant's key from ORCHESTRATOR_API_KEYS. When the API dies the script ends with a
    failure (Kubernetes restarts the container) instead of leaving a head without its API;
    Kubernetes' SIGTERM reaches Ray and the API, and the script ends once they have."""
    port, api_port = free_port(), free_port()
    ray_temp = Path(tempfile.mkdtemp(prefix="h2ray", dir="/tmp"))  # Ray's socket paths are short
    key = secrets.token_urlsafe(24)
    ray_start = " ".join(
        [
            "ray start --head --block --node-ip-address=127.0.0.1",
            f"--port={port} --ray-client-server-port={free_port()}",
            f"--dashboard-host=127.0.0.1 --dashboard-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()} --metrics-export-port={free_port()}",
            f"--temp-dir={ray_temp} --disable-usage-stats --num-cpus=2",
        ]
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "ORCHESTRATOR_"))},
        "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
        "KUBERAY_GEN_RAY_START_CMD": ray_start,
        "RAY_ADDRESS": f"127.0.0.1:{port}",  # as KubeRay sets it on the head
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # loopback only, on this machine
        "RAY_SERVE_PROXY_USE_GRPC": "1",
        "RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH": "536870912",
        "ORCHESTRATOR_API_PORT": str(api_port),
        "ORCHESTRATOR_API_KEYS": f"h2-kuberay:{key}",
        "ORCHESTRATOR_DATA_DIR": str(tmp_path / "records"),
        "ORCHESTRATOR_NODE_SETUP_TIMEOUT_S": "120",
    }
    log_path = tmp_path / "head.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [str(START), "head"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{api_port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.5)  # polling a deadline-bound wait
        auth = {"Authorization": f"Bearer {key}"}
        assert httpx.get(f"{url}/v1/agents", headers=auth, timeout=10).status_code == 200
        assert httpx.get(f"{url}/v1/agents", timeout=10).status_code == 401
        text = log_path.read_text()
        assert text.index("Ray on this node: ok") < text.index("starting the API"), text
        api = _api_pid(proc.pid)
        ending(proc)
        assert proc.wait(timeout=60) != 0, log_path.read_text()
        # Whatever ended it, the API is not left running without its container.
        assert not Path(f"/proc/{api}").exists() or _is_zombie(api)
    finally:
        _stop_session(proc.pid)
        log.close()
        shutil.rmtree(ray_temp, ignore_errors=True)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] in "ZX"
