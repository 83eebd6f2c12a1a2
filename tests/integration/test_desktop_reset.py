"""``Desktop.reset``: a desktop broken from inside is replaced by a new one of the same spec
and labels, through the same handle; nothing of the old container or its host directory
is left. (The agent's and the API's reset: ``test_serve_input``.)"""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator import Desktop, DesktopSpec
from orchestrator import actions as a
from orchestrator._docker import client

pytestmark = pytest.mark.integration


def _labels(container_id: str) -> dict[str, Any]:
    labels: dict[str, Any] = client().api.inspect_container(container_id)["Config"]["Labels"]
    return labels


def _exists(container_id: str) -> bool:
    return bool(client().api.containers(all=True, filters={"id": container_id}))


async def test_a_reset_replaces_a_broken_desktop_through_the_same_handle(
    desktop_image: str,
) -> None:
    desk = await Desktop.start(
        DesktopSpec(image=desktop_image, width=1024, height=768),
        labels={"orchestrator.test": "reset"},
    )
    try:
        assert (await desk.run("echo kept > ~/marker && whoami")).stdout == "agent\n"
        old_id, old_container, old_sockdir = desk.id, desk.container_id, desk.sockdir.root
        assert old_container is not None
        assert (await desk.run("echo broken > /etc/passwd", user="root")).ok
        assert not (await desk.run("whoami")).ok  # every later agent command fails

        await desk.reset()

        assert desk.id != old_id and desk.container_id not in (None, old_container)
        assert desk.sockdir.root != old_sockdir and desk.sockdir.root.is_dir()
        assert not _exists(old_container) and not old_sockdir.exists()
        assert await desk.is_alive()
        labels = _labels(desk.container_id or "")
        assert labels["orchestrator.test"] == "reset"
        assert labels["orchestrator.desktop.id"] == desk.id
        assert (await desk.run("whoami")).stdout == "agent\n"
        assert (await desk.run("test -e ~/marker || echo gone")).stdout == "gone\n"
        shot = await desk.screenshot()  # the display is the new one, of the same size
        assert (shot.width, shot.height) == (1024, 768)
        assert (await desk.act(a.Move(x=10, y=20))).ok
    finally:
        await desk.stop()
    assert desk.container_id is not None and not _exists(desk.container_id)
    assert not desk.sockdir.root.exists()
