"""What the API refuses before a desktop sees it, through real HTTP: a NUL in a shell
command or its directory and text over the per-action typing cap are a 422 naming the field
(a NUL was a 500: the command builder's ValueError). And the way out of a desktop broken
from inside: ``POST /v1/agents/{id}/desktop/reset`` (and the SDK's ``reset_desktop``).

Uses the Serve deployment of ``test_serve_api`` (its module fixture, started again here).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator import actions as a
from tests.integration.test_serve_api import TENANT_A, Api, _error, agent_a, api, until

pytestmark = pytest.mark.integration

__all__ = ["agent_a", "api"]  # the imported module fixtures


@pytest.fixture
def c(api: Api) -> Iterator[httpx.Client]:
    with api.client(TENANT_A) as client:
        yield client


def test_a_nul_in_a_shell_command_is_a_422_naming_the_field(
    c: httpx.Client, agent_a: dict[str, Any]
) -> None:
    r = c.post(f"/v1/agents/{agent_a['id']}/shell", json={"command": "echo a\0b"})
    message = _error(r, 422, "invalid_request")
    assert "command" in message and "NUL" in message, message
    r = c.post(
        f"/v1/agents/{agent_a['id']}/actions", json={"type": "shell", "command": "echo a\0b"}
    )
    message = _error(r, 422, "invalid_request")
    assert "command" in message and "NUL" in message, message
    # the desktop is fine and the same command without the NUL runs
    r = c.post(f"/v1/agents/{agent_a['id']}/shell", json={"command": "echo ab"})
    assert r.status_code == 200 and r.json()["stdout"] == "ab\n", r.text


def test_a_nul_in_a_shell_directory_is_a_422_naming_the_field(
    c: httpx.Client, agent_a: dict[str, Any]
) -> None:
    action = {"type": "shell", "command": "pwd", "cwd": "/tmp\0/etc"}
    message = _error(c.post(f"/v1/agents/{agent_a['id']}/actions", json=action), 422)
    assert "cwd" in message and "NUL" in message, message
    action["cwd"] = "/tmp"
    r = c.post(f"/v1/agents/{agent_a['id']}/actions", json=action)
    assert r.status_code == 200 and r.json()["command"]["stdout"] == "/tmp\n", r.text


def test_typing_more_than_the_cap_in_one_action_is_a_422(
    c: httpx.Client, agent_a: dict[str, Any]
) -> None:
    over = {"type": "type", "text": "x" * (a.MAX_TYPE_CHARS + 1)}
    message = _error(c.post(f"/v1/agents/{agent_a['id']}/actions", json=over), 422)
    assert "text" in message and str(a.MAX_TYPE_CHARS) in message, message


# ---------------------------------------------------------------------- desktop reset


def _desktop_of(agent_id: str) -> dict[str, Any]:
    """The agent's one desktop container (Docker's listing: id, labels)."""
    from orchestrator._docker import client

    found = client().api.containers(filters={"label": f"orchestrator.agent={agent_id}"})
    assert len(found) == 1, found
    container: dict[str, Any] = found[0]
    return container


def _exists(container_id: str) -> bool:
    from orchestrator._docker import client

    return bool(client().api.containers(all=True, filters={"id": container_id}))


@pytest.fixture
def fresh_agent(api: Api) -> Iterator[dict[str, Any]]:
    """An agent of tenant A of the test's own (its desktop gets broken)."""
    with api.agent(f"reset-{secrets.token_hex(3)}") as info:
        yield info


def test_a_desktop_broken_from_inside_is_replaced_by_a_reset(
    c: httpx.Client, fresh_agent: dict[str, Any]
) -> None:
    base = f"/v1/agents/{fresh_agent['id']}"

    def shell(command: str, user: str = "agent") -> dict[str, Any]:
        r = c.post(f"{base}/shell", json={"command": command, "user": user, "timeout_s": 20})
        assert r.status_code == 200, r.text
        result: dict[str, Any] = r.json()
        return result

    assert shell("echo kept > ~/marker && whoami")["stdout"] == "agent\n"
    old = _desktop_of(fresh_agent["id"])
    old_sockdir = Path(old["Labels"]["orchestrator.sockdir"])
    assert old_sockdir.is_dir()
    # root overwrites /etc/passwd: no later command finds its user any more
    assert shell("echo 'broken' > /etc/passwd", user="root")["exit_code"] == 0
    broken = shell("whoami")
    assert broken["exit_code"] != 0, broken

    r = c.post(f"{base}/desktop/reset")
    assert r.status_code == 200, r.text
    assert r.json()["id"] == fresh_agent["id"] and r.json()["status"] == "idle", r.text

    new = _desktop_of(fresh_agent["id"])
    assert new["Id"] != old["Id"]
    assert new["Labels"]["orchestrator.sockdir"] != str(old_sockdir)
    assert new["Labels"]["orchestrator.path"] == old["Labels"]["orchestrator.path"]
    assert not _exists(old["Id"]), "the old container is removed"
    assert not old_sockdir.exists(), "the old socket directory is removed"
    assert shell("whoami")["stdout"] == "agent\n"
    assert shell("test -e ~/marker || echo gone")["stdout"] == "gone\n"
    assert shell("id -un", user="root")["stdout"] == "root\n"


def test_a_reset_is_refused_while_a_task_runs_and_works_through_the_sdk(
    api: Api, c: httpx.Client, fresh_agent: dict[str, Any]
) -> None:
    from orchestrator.sdk import AsyncClient, Client, ConflictError

    base = f"/v1/agents/{fresh_agent['id']}"
    slow = {"steps": [{"type": "shell", "command": "sleep 60", "timeout_s": 90}]}
    r = c.post(f"{base}/tasks", json={"description": "wait", "script": slow})
    assert r.status_code == 202, r.text
    task = r.json()
    container = _desktop_of(fresh_agent["id"])["Id"]
    message = _error(c.post(f"{base}/desktop/reset"), 409, "conflict")
    assert "running a task" in message, message
    with Client(api.url, api_key=api.keys[TENANT_A]) as sdk:
        agent = sdk.agent(fresh_agent["id"])
        with pytest.raises(ConflictError):
            agent.reset_desktop()

        async def reset_async() -> None:
            async with AsyncClient(api.url, api_key=api.keys[TENANT_A]) as aio:
                await (await aio.agent(fresh_agent["id"])).reset_desktop()

        with pytest.raises(ConflictError):
            asyncio.run(reset_async())
        assert _desktop_of(fresh_agent["id"])["Id"] == container, "nothing was reset"

        r = c.post(f"/v1/tasks/{task['id']}/cancel")
        assert r.status_code == 200, r.text
        until(
            lambda: c.get(f"{base}").json()["status"] == "idle",
            timeout_s=30,
            what="the agent idle after the cancel",
        )
        assert agent.reset_desktop() is agent and agent.info.status.value == "idle"
    assert _desktop_of(fresh_agent["id"])["Id"] != container
    assert not _exists(container)
