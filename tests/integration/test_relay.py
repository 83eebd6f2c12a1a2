"""The live desktop relay through real HTTP: a Ray Serve deployment on 127.0.0.1, a real
agent with a real desktop, a Python WebSocket viewer speaking RFB through
``/v1/agents/{id}/vnc?ticket=...``.

Checked: the viewer gets the ServerInit and whole framebuffer updates of the desktop; a view
ticket (and a control ticket without the lease) drops a click, seen on the desktop itself
(``xdotool getmouselocation`` through the agent's shell) and in the actor's relay counters;
a control ticket of the lease holder moves the pointer; bad tickets, another agent's ticket
and a foreign Origin are refused.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from .relay_client import Viewer
from .serve_api import deployed_api

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

TENANT = "t-relay"


class Api:
    def __init__(self, url: str, key: str, image: str) -> None:
        self.url = url
        self.image = image
        self.http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120
        )

    def ws(self, path: str) -> str:
        return "ws" + self.url.removeprefix("http") + path

    def ticket(self, agent_id: str, mode: str = "view") -> str:
        r = self.http.post(f"/v1/agents/{agent_id}/tickets", json={"mode": mode})
        assert r.status_code == 200, r.text
        path: str = r.json()["relay_path"]
        return path

    def shell(self, agent_id: str, command: str) -> str:
        r = self.http.post(f"/v1/agents/{agent_id}/shell", json={"command": command})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["exit_code"] == 0, body
        out: str = body["stdout"]
        return out

    def pointer(self, agent_id: str) -> tuple[int, int]:
        out = self.shell(agent_id, "DISPLAY=:0 xdotool getmouselocation")
        found = re.search(r"x:(\d+) y:(\d+)", out)
        assert found, out
        return int(found[1]), int(found[2])


@pytest.fixture(scope="module")
def api(ray_session: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    key = secrets.token_urlsafe(24)
    keys = [(TENANT, "sha256:" + hashlib.sha256(key.encode()).hexdigest())]
    with deployed_api(keys, tmp_path_factory.mktemp("relay")) as url:
        api = Api(url, key, ray_session.image)
        try:
            yield api
        finally:
            api.http.close()


@pytest.fixture(scope="module")
def agent(api: Api) -> Iterator[dict[str, Any]]:
    r = api.http.post(
        "/v1/agents", json={"name": "watched", "role": "tester", "desktop": {"image": api.image}}
    )
    assert r.status_code == 201, r.text
    info: dict[str, Any] = r.json()
    try:
        yield info
    finally:
        api.http.delete(f"/v1/agents/{info['id']}")


def _counters(agent: dict[str, Any]) -> Any:
    import ray

    from actors import NAMESPACE

    handle = ray.get_actor(agent["path"], namespace=NAMESPACE)
    return ray.get(handle.vnc_counters.remote(), timeout=30)


def test_a_viewer_gets_the_server_init_and_whole_frames(api: Api, agent: dict[str, Any]) -> None:
    before = _counters(agent)
    # control: a watcher (view, embed) gets one whole frame on request per 2 s (review R1)
    viewer = Viewer.open(api.ws(api.ticket(agent["id"], "control")), origin=api.url)
    try:
        init = viewer.handshake()
        assert init.width >= 640 and init.height >= 480, init
        assert init.bytes_per_pixel == 4
        viewer.full_frame(init)
        viewer.full_frame(init)  # and again: the session goes on
    finally:
        viewer.close()
    after = _counters(agent)
    assert after.opened == before.opened + 1
    assert after.bytes_to_viewer - before.bytes_to_viewer >= 2 * init.width * init.height * 4


@pytest.mark.parametrize("mode", ["view", "embed", "control"])
def test_a_click_without_the_lease_never_reaches_the_desktop(
    api: Api, agent: dict[str, Any], mode: str
) -> None:
    api.shell(agent["id"], "DISPLAY=:0 xdotool mousemove 7 9")
    assert api.pointer(agent["id"]) == (7, 9)
    before = _counters(agent)
    viewer = Viewer.open(api.ws(api.ticket(agent["id"], mode)))
    try:
        init = viewer.handshake()
        viewer.click(300, 200)
        # x11vnc handles a session's messages in order: once this answer is here, a click
        # that had got through would have moved the pointer.
        viewer.full_frame(init)
    finally:
        viewer.close()
    assert api.pointer(agent["id"]) == (7, 9)
    assert _counters(agent).dropped - before.dropped == 2  # button down and up


def test_the_lease_holder_steers_with_a_control_ticket(api: Api, agent: dict[str, Any]) -> None:
    api.shell(agent["id"], "DISPLAY=:0 xdotool mousemove 7 9")
    r = api.http.post(f"/v1/agents/{agent['id']}/lease", json={"ttl_s": 120})
    assert r.status_code == 200, r.text
    try:
        viewer = Viewer.open(api.ws(api.ticket(agent["id"], "control")))
        try:
            init = viewer.handshake()
            viewer.click(300, 200)
            viewer.full_frame(init)
        finally:
            viewer.close()
        assert api.pointer(agent["id"]) == (300, 200)
    finally:
        r = api.http.post(f"/v1/agents/{agent['id']}/lease/hand-back", json={"note": "test"})
        assert r.status_code == 200, r.text


def _close_code(url: str) -> int:
    viewer = Viewer.open(url)
    try:
        with pytest.raises(ConnectionClosed) as closed:
            viewer.read(1, timeout_s=30)
    finally:
        viewer.close()
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


def test_bad_tickets_are_refused(api: Api, agent: dict[str, Any]) -> None:
    base = f"/v1/agents/{agent['id']}/vnc"
    assert _close_code(api.ws(base)) == 4401
    assert _close_code(api.ws(base + "?ticket=not-a-ticket")) == 4401
    good = api.ticket(agent["id"]).split("ticket=", 1)[1]
    assert _close_code(api.ws(base + "?ticket=" + good[:-4] + "AAAA")) == 4401
    # a ticket for this agent opens no other agent's desktop
    assert _close_code(api.ws(f"/v1/agents/agent-nope/vnc?ticket={good}")) == 4401


def test_a_foreign_origin_is_refused_before_the_upgrade(api: Api, agent: dict[str, Any]) -> None:
    with pytest.raises(InvalidStatus) as refused:
        Viewer.open(api.ws(api.ticket(agent["id"])), origin="http://evil.example")
    assert refused.value.response.status_code == 403


def test_more_relays_than_the_cap_are_refused(api: Api, agent: dict[str, Any]) -> None:
    """Security #5: an agent has at most ``MAX_PER_AGENT`` relays open; one more closes 4429,
    and once one closes a new one opens."""
    from serve_app._relay import CLOSE_TOO_MANY, MAX_PER_AGENT

    viewers = []
    try:
        for _ in range(MAX_PER_AGENT):
            viewer = Viewer.open(api.ws(api.ticket(agent["id"])))
            viewers.append(viewer)
            viewer.handshake()
        assert _close_code(api.ws(api.ticket(agent["id"]))) == CLOSE_TOO_MANY
        viewers.pop().close()
        deadline = time.monotonic() + 30
        while True:  # the replica counts the closed one down when its route ends
            viewer = Viewer.open(api.ws(api.ticket(agent["id"])))
            try:
                viewer.handshake()
                break
            except ConnectionClosed as e:
                viewer.close()
                assert e.rcvd is not None and e.rcvd.code == CLOSE_TOO_MANY
                assert time.monotonic() < deadline, "the cap never freed a slot"
        viewer.close()
    finally:
        for viewer in viewers:
            viewer.close()


def test_a_viewer_that_breaks_the_handshake_is_closed_and_leaves_no_session(
    api: Api, agent: dict[str, Any]
) -> None:
    """The replica answers the viewer's handshake while the actor opens the desktop's side:
    a viewer that answers the greeting with something else is closed (1011, the reason
    named) and the session the actor opened meanwhile is closed too."""
    from serve_app._relay import CLOSE_FAILED

    before = _no_session_open(agent)  # the tests before closed theirs: the actor follows
    viewer = Viewer.open(api.ws(api.ticket(agent["id"])))
    try:
        assert viewer.read(12) == b"RFB 003.008\n"
        viewer.ws.send(b"HTTP/1.1 200")
        with pytest.raises(ConnectionClosed) as closed:
            viewer.read(1, timeout_s=30)
    finally:
        viewer.close()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == CLOSE_FAILED
    assert "RFB version" in closed.value.rcvd.reason
    after = _no_session_open(agent)
    assert after.opened == before.opened + 1


def _no_session_open(agent: dict[str, Any]) -> Any:
    """The agent's relay counters once it has no session open (within 30 s)."""
    deadline = time.monotonic() + 30
    while (counters := _counters(agent)).open != 0:
        assert time.monotonic() < deadline, f"the actor's session stayed open: {counters}"
        time.sleep(0.1)  # polling interval of a deadline-bound wait
    return counters
