"""The README's main job driven from a notebook cell (``examples/notebook.py``, at most 10
lines) through the SDK: ``start_local()`` finds a local cluster started by ``orchestrator up``
(its own Ray head, on free loopback ports, in a temporary data directory), the web-server team
runs, the artifacts zip is saved. Runs the cell exactly as written, in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.integration.serve_api import free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CELL = REPO / "examples" / "notebook.py"


def _code_lines(text: str) -> list[str]:
    return [x for x in text.splitlines() if x.strip() and not x.lstrip().startswith("#")]


def test_the_notebook_cell_is_at_most_ten_lines() -> None:
    assert len(_code_lines(CELL.read_text())) <= 10


def test_the_notebook_cell_runs_the_main_job(tmp_path: Path, desktop_image: str) -> None:
    orchestrator = str(Path(sys.executable).with_name("orchestrator"))
    env = {
        **{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
        "ORCHESTRATOR_DATA_DIR": str(tmp_path / "data"),
        "ORCHESTRATOR_DESKTOP_IMAGE": desktop_image,
    }
    work = tmp_path / "work"
    (work / "examples").mkdir(parents=True)
    (work / "examples" / "web_server.yaml").write_text(
        (REPO / "examples" / "web_server.yaml").read_text()
    )
    port, dash = str(free_port()), str(free_port())
    up = subprocess.run(
        [orchestrator, "up", "--port", port, "--dashboard-port", dash, "--desktops", "6"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        ran = subprocess.run(
            [sys.executable, str(CELL)],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=400,
        )
        assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
        assert ran.stdout.startswith("succeeded"), ran.stdout[-3000:]
        zipped = work / "out" / "web_server-artifacts.zip"
        with zipfile.ZipFile(zipped) as z:
            manifest = json.loads(z.read("manifest.json"))
            assert manifest["state"] == "succeeded" and manifest["tasks"] >= 4, manifest
            assert any(n.startswith("screenshots/") for n in z.namelist())
    finally:
        down = subprocess.run(
            [orchestrator, "down"], env=env, capture_output=True, text=True, timeout=180
        )
        assert down.returncode == 0, down.stdout + down.stderr
