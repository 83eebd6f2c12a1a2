"""examples/kuberay/start-node.sh, the Ray container's command on KubeRay, against the real
Docker engine: a worker runs KubeRay's `ray start` (handed over in KUBERAY_GEN_RAY_START_CMD)
only once the engine answers at DOCKER_HOST and the desktop image is in it, so a node the
autoscaler adds declares its `desktop` units only when it can start desktops. Without an
engine or an image it gives up at its deadline, saying what it waited for, and never starts
Ray. (The command it hands over to is KubeRay's; here a marker command stands in for it.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
