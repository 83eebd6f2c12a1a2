"""Reliability check 10 (issue 9, S1): no host-side code follows a path a desktop's
container can change. For every file and socket the host reads, writes or connects to in a
desktop's directories, a symbolic link (to a host file, a socket the test listens on, or
the Docker socket itself) and a look-alike (a socket the test binds on the host, a FIFO)
are planted, the way a tenant's root shell (or the agent user, for X0) would; the host
refuses each one, sends nothing to what was planted, and the desktop works again after a
restart. The live view serves only requests that carry the desktop's token.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from orchestrator import Desktop, DesktopSpec
from orchestrator.desktop._ssh import ShellSession
from orchestrator.desktop._x11 import X11Session
from orchestrator.errors import UntrustedPathError

RUN = "/run/desktop"  # the container's name for <sockdir>/run
DOCKER_SOCKET = "/var/run/docker.sock"
SECRET = "host-secret-9f1c: nothing of a desktop's may read this\n"


@pytest.fixture(scope="module")
async def desk(desktop_image: str) -> AsyncIterator[Desktop]:
    """A desktop of this module's own: every test breaks it, and restarts it after."""
    d = await Desktop.start(DesktopSpec(image=desktop_image))
    try:
        yield d
    finally:
        await d.stop()


@dataclass
class Host:
    """What the test puts on the host: a secret file and a socket it listens on."""

    dir: Path
    secret: Path
    sock: socket.socket

    @property
    def sock_path(self) -> str:
        return str(self.sock.getsockname())

    def accepted(self) -> socket.socket | None:
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return None
        return conn


@pytest.fixture
def host() -> Iterator[Host]:
    d = Path(tempfile.mkdtemp(prefix="hp-"))  # short: unix socket paths max 107 bytes
    secret = d / "secret"
    secret.write_text(SECRET)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(d / "host.sock"))
    s.listen(8)
    s.setblocking(False)
    try:
        yield Host(d, secret, s)
    finally:
        s.close()
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
async def restarted(desk: Desktop) -> AsyncIterator[Desktop]:
    """The desktop, restarted after the test (desktop-init clears what was planted) and
    shown to work again."""
    yield desk
    await desk.restart()
    assert (await desk.run("echo back")).stdout == "back\n"
    assert (await desk.grab()).width == desk.size[0]


async def plant(desk: Desktop, command: str, user: str = "root") -> None:
    """Run ``command`` in the desktop as a tenant's shell would (``user``)."""
    result = await desk.run(command, user=user)  # type: ignore[arg-type]
    assert result.ok, result


async def link(desk: Desktop, name: str, target: str, user: str = "root") -> None:
    """Replace the container's ``name`` by a symbolic link to ``target`` (a host path)."""
    await plant(desk, f"ln -sfn {target} {name}.planted && mv -fT {name}.planted {name}", user)


def look_alike(path: Path) -> socket.socket:
    """A socket the test (a host process) listens on, in place of ``path``."""
    path.unlink(missing_ok=True)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.listen(8)
    s.setblocking(False)
    return s


def nothing_sent(listener: socket.socket) -> None:
    """The listener saw no connection, or one the host closed without sending a byte."""
    try:
        conn, _ = listener.accept()
    except BlockingIOError:
        return
    with conn:
        conn.settimeout(5)
        assert conn.recv(100) == b""


async def reconnect(desk: Desktop, timeout_s: float = 10) -> None:
    """What ``restart`` does after the container restarted: read ``ready``, pin and check
    the X socket; then (in the background, waited for here as the first command would) read
    the host key and dial ssh.sock."""
    await desk._disconnect()
    await desk._connect(timeout_s)
    await desk._shell_session()


def exchange(port: int, request: bytes) -> bytes:
    """Send ``request`` to the live view port and read until it closes (blocking)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def http_get(port: int, path: str) -> bytes:
    return exchange(port, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())


async def live_port_and_token(desk: Desktop) -> tuple[int, str]:
    url = urlsplit((await desk.live_view()).url)
    assert url.port is not None
    return url.port, url.path.split("/")[1]


# ---------------------------------------------------------------------- files the host reads


@pytest.mark.parametrize("name", ["ready", "ssh_host_key.pub"])
async def test_a_linked_file_is_refused_not_read(restarted: Desktop, host: Host, name: str) -> None:
    desk = restarted
    await link(desk, f"{RUN}/{name}", str(host.secret))
    with pytest.raises(UntrustedPathError, match="symbolic link") as err:
        await reconnect(desk)
    assert "host-secret" not in str(err.value)


async def test_a_linked_failed_file_never_reaches_an_error(restarted: Desktop, host: Host) -> None:
    """``failed``'s text goes into the error a tenant sees: a link there read host files."""
    desk = restarted
    await link(desk, f"{RUN}/failed", str(host.secret))
    await plant(desk, f"rm -f {RUN}/ready")
    with pytest.raises(UntrustedPathError, match="symbolic link") as err:
        await reconnect(desk)
    assert "host-secret" not in str(err.value)


@pytest.mark.parametrize("name", ["ready", "failed", "ssh_host_key.pub"])
async def test_a_fifo_or_a_socket_in_place_of_a_file_is_refused_at_once(
    restarted: Desktop, name: str
) -> None:
    desk = restarted
    if name == "failed":
        await plant(desk, f"rm -f {RUN}/ready")
    await plant(desk, f"rm -f {RUN}/{name} && mkfifo -m 666 {RUN}/{name}")
    t0 = time.monotonic()
    with pytest.raises(UntrustedPathError, match="FIFO"):
        await reconnect(desk)
    assert time.monotonic() - t0 < 5  # not stuck opening a FIFO nobody writes
    with look_alike(desk.sockdir.run / name) as s:
        with pytest.raises(UntrustedPathError, match="socket"):
            await reconnect(desk)
        nothing_sent(s)


# ---------------------------------------------------------------------- files the host writes


async def test_secrets_are_never_written_through_a_link_or_into_a_fifo(
    restarted: Desktop, host: Host
) -> None:
    desk = restarted
    for name in ("authorized_keys", "vnc.passwd"):
        await link(desk, f"{RUN}/{name}", str(host.secret))
    await asyncio.wait_for(asyncio.to_thread(desk._write_secrets), 10)
    assert host.secret.read_text() == SECRET  # the host file is untouched
    for name, mode in (("authorized_keys", 0o644), ("vnc.passwd", 0o600)):
        path = desk.sockdir.run / name
        assert not path.is_symlink() and path.is_file()
        assert os.stat(path).st_mode & 0o777 == mode
    for name in ("authorized_keys", "vnc.passwd"):  # a FIFO nobody reads: no hang either
        await plant(desk, f"rm -f {RUN}/{name} && mkfifo -m 666 {RUN}/{name}")
    await asyncio.wait_for(asyncio.to_thread(desk._write_secrets), 10)
    assert (desk.sockdir.run / "vnc.passwd").read_text() == desk._vnc_password + "\n"


# ---------------------------------------------------------------------- sockets


@pytest.mark.parametrize("target", ["host", "docker"])
async def test_a_linked_ssh_socket_is_refused(restarted: Desktop, host: Host, target: str) -> None:
    desk = restarted
    await link(desk, f"{RUN}/ssh.sock", host.sock_path if target == "host" else DOCKER_SOCKET)
    t0 = time.monotonic()
    with pytest.raises(UntrustedPathError, match="symbolic link"):
        await ShellSession.connect(
            desk.sockdir.run / "ssh.sock",
            desk._client_key,
            desk.sockdir.run / "ssh_host_key.pub",
            timeout=10,
        )
    assert time.monotonic() - t0 < 5  # refused at once, not retried until the deadline
    assert host.accepted() is None
    assert (await desk.run("echo on")).stdout == "on\n"  # the live connection is the real one


async def test_a_look_alike_ssh_socket_is_refused_before_a_byte(restarted: Desktop) -> None:
    desk = restarted
    with look_alike(desk.sockdir.run / "ssh.sock") as s:
        with pytest.raises(UntrustedPathError, match="not a process of the desktop"):
            await reconnect(desk)
        nothing_sent(s)


@pytest.mark.parametrize("target", ["host", "docker"])
async def test_a_linked_x_socket_planted_by_the_agent_user_is_refused(
    restarted: Desktop, host: Host, target: str
) -> None:
    """X0 belongs to the unprivileged agent user (Xvfb) in a 1777 directory: no root needed."""
    desk = restarted
    where = host.sock_path if target == "host" else DOCKER_SOCKET
    await link(desk, "/tmp/.X11-unix/X0", where, user="agent")
    with pytest.raises(UntrustedPathError, match="symbolic link"):
        await reconnect(desk)
    assert host.accepted() is None


async def test_a_look_alike_x_socket_is_refused(restarted: Desktop) -> None:
    desk = restarted
    with look_alike(desk.sockdir.x_socket) as s:
        with pytest.raises(UntrustedPathError, match="not a process of the desktop"):
            await reconnect(desk)
        nothing_sent(s)


async def test_an_x_socket_swapped_after_connecting_is_never_reached(
    restarted: Desktop, host: Host
) -> None:
    """The display link points at the pinned socket: a swap afterwards changes nothing for
    the open connections nor for new ones to the desktop's display."""
    desk = restarted
    await link(desk, "/tmp/.X11-unix/X0", host.sock_path, user="agent")
    assert (await desk.grab()).width == desk.size[0]
    x = await asyncio.to_thread(X11Session, desk.display)  # a new connection, by name
    try:
        assert x.size == desk.size
    finally:
        x.close()
    assert host.accepted() is None


# ---------------------------------------------------------------------- the live view


@pytest.mark.parametrize("target", ["docker", "host"])
async def test_a_linked_novnc_socket_never_reaches_the_docker_api(
    restarted: Desktop, host: Host, target: str
) -> None:
    """The finding as filed: novnc.sock -> /var/run/docker.sock, then GET /version."""
    desk = restarted
    port, token = await live_port_and_token(desk)
    await link(desk, f"{RUN}/novnc.sock", DOCKER_SOCKET if target == "docker" else host.sock_path)
    for path in ("/version", f"/{token}/version", f"/{token}/v1.41/containers/json"):
        answer = await asyncio.to_thread(http_get, port, path)
        assert b"ApiVersion" not in answer and b"Image" not in answer, answer[:300]
        if path.startswith(f"/{token}/"):
            assert answer == b""  # refused upstream: the connection just closes
        else:
            assert answer.startswith(b"HTTP/1.1 403 Forbidden")
    assert host.accepted() is None


async def test_a_look_alike_novnc_socket_gets_no_request(restarted: Desktop) -> None:
    desk = restarted
    port, token = await live_port_and_token(desk)
    with look_alike(desk.sockdir.run / "novnc.sock") as s:
        assert await asyncio.to_thread(http_get, port, f"/{token}/vnc.html") == b""
        nothing_sent(s)


async def test_the_live_view_serves_only_its_token(desk: Desktop) -> None:
    port, token = await live_port_and_token(desk)
    page = await asyncio.to_thread(http_get, port, f"/{token}/vnc.html")
    assert page.split(b" ", 2)[1] == b"200" and b"noVNC" in page, page[:200]
    # a second request on the same connection never goes past the check
    pipelined = (
        f"GET /{token}/vnc.html HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n"
        "GET /app/ui.js HTTP/1.1\r\nHost: h\r\n\r\n"
    )
    data = await asyncio.to_thread(exchange, port, pipelined.encode())
    assert data.count(b"HTTP/1.") == 1 and b"noVNC" in data
    # a request without the token is answered 403 and connects nowhere: a listener of the
    # test's own in place of novnc.sock sees no connection
    genuine = desk.sockdir.run / "novnc.sock"
    os.rename(genuine, genuine.with_name("novnc.sock.real"))
    try:
        with look_alike(genuine) as spy:
            for path in ("/vnc.html", "/", f"/{token[:-1]}/vnc.html", f"/x{token}/vnc.html"):
                answer = await asyncio.to_thread(http_get, port, path)
                assert answer.startswith(b"HTTP/1.1 403 Forbidden"), (path, answer[:100])
            with pytest.raises(BlockingIOError):
                spy.accept()
    finally:
        os.replace(genuine.with_name("novnc.sock.real"), genuine)
    page = await asyncio.to_thread(http_get, port, f"/{token}/vnc.html")
    assert b"noVNC" in page
