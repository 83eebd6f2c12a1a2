"""Limits a tenant cannot exceed (S4/S5, reliability check 12): a desktop over one of the
node's maxima or of an image not allowed is refused with 422 naming the field and the
maximum, at create, hire and workflow start, and nothing starts: no agent, no container.

Uses the Serve deployment of ``test_serve_api`` (its module fixture, started again here).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from orchestrator import Desktop, DesktopSpec
from orchestrator._docker import client
from orchestrator.config import settings
from orchestrator.errors import ConfigError
from tests.integration.test_serve_api import TENANT_A, Api, _error, agent_a, api

pytestmark = pytest.mark.integration

__all__ = ["agent_a", "api"]  # the imported module fixtures

NODE_MIB = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20

OVER: list[tuple[dict[str, Any], str]] = [
    # (desktop fields over a maximum, the start of the 422's message)
    ({"memory_mb": NODE_MIB + 1}, f"desktop.memory_mb: {NODE_MIB + 1} is over the maximum of "),
    ({"memory_mb": 1_048_576}, f"desktop.memory_mb: 1048576 is over the maximum of {NODE_MIB} "),
    ({"pids_limit": 1_000_000}, "desktop.pids_limit: 1000000 is over the maximum of 4096"),
    ({"shm_mb": 4096, "memory_mb": 2048}, "desktop.shm_mb: 4096 is over the maximum of 2048"),
    ({"cpus": (os.cpu_count() or 1) + 1}, "desktop.cpus: "),
    ({"image": "debian:bookworm-slim"}, "desktop.image: 'debian:bookworm-slim' is not an image"),
]

WORKFLOW = """\
agent: {name: NAME, role: tester, desktop: DESKTOP}
task: {description: say hello, script: {steps: [{type: shell, command: echo hi}]}}
"""


def _desktops() -> set[str]:
    found = client().api.containers(all=True, filters={"label": "orchestrator.desktop"})
    return {c["Id"] for c in found}


def _sockdirs() -> set[str]:
    root = settings().runtime_dir / "desktops"
    return {p.name for p in root.iterdir()} if root.exists() else set()


def test_a_desktop_over_a_maximum_is_422_naming_it_and_nothing_starts(
    api: Api, agent_a: dict[str, Any]
) -> None:
    parent = agent_a  # the hires are asked of it
    with api.client(TENANT_A) as c:
        agents_before = {a["id"] for a in c.get("/v1/agents").json()}
        desktops_before = _desktops()
        for i, (fields, message) in enumerate(OVER):
            desktop = {"image": api.image, **fields}
            spec = {"name": f"too-big-{i}", "role": "tester", "desktop": desktop}
            r = c.post("/v1/agents", json=spec)
            assert _error(r, 422, "invalid_request").startswith(message), (fields, r.text)
            r = c.post(f"/v1/agents/{parent['id']}/children", json=spec)
            assert _error(r, 422, "invalid_request").startswith(message), (fields, r.text)
            text = WORKFLOW.replace("NAME", f"too-big-wf-{i}").replace(
                "DESKTOP", "{" + ", ".join(f"{k}: {v}" for k, v in desktop.items()) + "}"
            )
            r = c.post("/v1/workflows", content=text, headers={"Content-Type": "text/yaml"})
            assert _error(r, 422, "invalid_request").startswith(message), (fields, r.text)
        # Nothing was started: no agent (not even a failed one), no child, no container.
        assert {a["id"] for a in c.get("/v1/agents").json()} == agents_before
        tree = c.get(f"/v1/agents/{parent['id']}/tree").json()
        assert tree["children"] == []
        assert _desktops() == desktops_before


async def test_the_node_starting_a_desktop_enforces_its_maxima(desktop_image: str) -> None:
    """Below the API: ``Desktop.start`` on the node refuses before making anything."""
    desktops, sockdirs = _desktops(), _sockdirs()
    for fields, message in OVER:
        with pytest.raises(ConfigError) as err:
            await Desktop.start(DesktopSpec(**{"image": desktop_image, **fields}))
        assert str(err.value).startswith(message)
    assert _desktops() == desktops and _sockdirs() == sockdirs
