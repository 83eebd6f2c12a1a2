"""A desktop's life on the real engine: start, hardening seen from inside, restart, loss,
stop, and the reaper."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator import Desktop, DesktopSpec, actions
from orchestrator._docker import client
from orchestrator.config import settings
from orchestrator.desktop import process_owner, reap
from orchestrator.desktop._container import CAPABILITIES
from orchestrator.desktop._display import X11_DIR
from orchestrator.errors import (
    ConfigError,
    DesktopGoneError,
    DockerRefusedError,
    ImageNotFoundError,
)

from .conftest import eventually

# Linux capability numbers, for reading CapEff from /proc.
CAP_NUMBERS = {
    "CHOWN": 0,
    "DAC_OVERRIDE": 1,
    "DAC_READ_SEARCH": 2,
    "FOWNER": 3,
    "FSETID": 4,
    "KILL": 5,
    "SETGID": 6,
    "SETUID": 7,
    "SETPCAP": 8,
    "NET_BIND_SERVICE": 10,
    "NET_RAW": 13,
    "SYS_CHROOT": 18,
    "SYS_ADMIN": 21,
    "MKNOD": 27,
    "AUDIT_WRITE": 29,
    "SETFCAP": 31,
}


async def test_desktop_is_labelled_and_hardened_seen_from_inside(desktop: Desktop) -> None:
    c = client().containers.get(desktop.container_id)
    assert c.labels["orchestrator.owner"] == process_owner()
    assert c.labels["orchestrator.desktop"] == "1"
    host = c.attrs["HostConfig"]
    assert host["PidsLimit"] == desktop.spec.pids_limit
    assert host["Memory"] == desktop.spec.memory_mb * 2**20
    assert host["NetworkMode"] == "none"
    assert not host.get("Privileged")
    assert not any("docker.sock" in m["Source"] for m in c.attrs["Mounts"])

    status = await desktop.run(
        "grep -E '^(NoNewPrivs|CapEff|CapBnd)' /proc/self/status", user="root"
    )
    fields = dict(line.split(":\t") for line in status.stdout.strip().splitlines())
    assert fields["NoNewPrivs"].strip() == "1"
    allowed = sum(1 << CAP_NUMBERS[c] for c in CAPABILITIES)
    assert int(fields["CapBnd"], 16) & ~allowed == 0, "a capability beyond the minimal set"
    agent = await desktop.run("grep CapEff /proc/self/status; id -u")
    assert agent.stdout.split()[1] == "0000000000000000" and agent.stdout.split()[2] == "1000"

    no_sock = await desktop.run("test ! -e /var/run/docker.sock && test ! -e /run/docker.sock")
    assert no_sock.ok
    # No network at all: only the loopback interface.
    ifaces = await desktop.run("ls /sys/class/net")
    assert ifaces.stdout.split() == ["lo"]
    # Limits are enforced inside: more processes than the limit cannot be started.
    limit = await desktop.run(
        "cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max"
    )
    assert limit.stdout.strip() == str(desktop.spec.pids_limit)


async def test_desktop_reports_its_geometry_and_services(desktop: Desktop) -> None:
    assert desktop.ready_info["width"] == 1280 and desktop.ready_info["height"] == 800
    frame = await desktop.grab()
    assert (frame.width, frame.height) == (1280, 800)
    procs = await desktop.run("ps -eo comm=", user="root")
    for name in ("Xvfb", "openbox", "tint2", "x11vnc", "sshd"):
        assert name in procs.stdout, f"{name} is not running: {procs.stdout}"


async def test_a_desktop_with_egress_has_a_network(desktop_image: str) -> None:
    async with await Desktop.start(DesktopSpec(image=desktop_image, network="egress")) as d:
        ifaces = await d.run("ls /sys/class/net")
        assert "eth0" in ifaces.stdout.split()


async def test_restart_gives_a_fresh_session_and_keeps_files(desktop_image: str) -> None:
    async with await Desktop.start(DesktopSpec(image=desktop_image)) as d:
        await d.run("echo kept > ~/note.txt && xterm &")
        before = (await d.run("pgrep -x xterm")).stdout
        assert before.strip()
        await d.restart()
        after = await d.run("cat ~/note.txt; pgrep -x xterm || echo no-xterm")
        assert after.stdout.split() == ["kept", "no-xterm"]
        assert (await d.act(actions.Click(x=5, y=5))).ok
        assert (await d.grab()).width == 1280


async def test_killed_desktop_is_noticed(desktop_image: str) -> None:
    d = await Desktop.start(DesktopSpec(image=desktop_image))
    try:
        assert d.container_id is not None
        await asyncio.to_thread(client().containers.get(d.container_id).kill)
        assert not await d.is_alive()
        with pytest.raises(DesktopGoneError):
            await d.run("true", timeout=5)
        with pytest.raises(DesktopGoneError):
            await d.grab()
    finally:
        await d.stop()


async def test_commands_and_transfers_on_a_removed_desktop_raise_desktop_gone(
    desktop_image: str, tmp_path: Path
) -> None:
    d = await Desktop.start(DesktopSpec(image=desktop_image))
    try:
        assert d.container_id is not None
        local = tmp_path / "note.txt"
        local.write_text("kept\n")
        await d.upload(local, "note.txt")
        await d.download("note.txt", tmp_path / "back.txt")
        assert (tmp_path / "back.txt").read_text() == "kept\n"
        await asyncio.to_thread(client().containers.get(d.container_id).remove, force=True)
        async with asyncio.timeout(30):  # a reconnect is given up after a few seconds
            with pytest.raises(DesktopGoneError):
                await d.upload(local, "again.txt")
            with pytest.raises(DesktopGoneError):
                await d.download("note.txt", tmp_path / "again.txt")
            with pytest.raises(DesktopGoneError):
                await d.run("true", timeout=5)
        assert not (tmp_path / "again.txt").exists()
    finally:
        await d.stop()


async def test_stop_removes_container_socket_dir_and_display_link(desktop_image: str) -> None:
    d = await Desktop.start(DesktopSpec(image=desktop_image))
    cid, sockdir, n = d.container_id, d.sockdir.root, d.display_number
    assert sockdir.exists() and (X11_DIR / f"X{n}").is_symlink()
    await d.stop()
    assert cid is not None
    assert not any(c.id == cid for c in client().containers.list(all=True))
    assert not sockdir.exists()
    assert not (X11_DIR / f"X{n}").is_symlink()
    await d.stop()  # idempotent


async def test_reaper_removes_desktops_whose_owner_is_gone(desktop_image: str) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_owner = process_owner(child.pid)
    child.wait()
    orphan = await Desktop.start(DesktopSpec(image=desktop_image), owner=dead_owner)
    alive = await Desktop.start(DesktopSpec(image=desktop_image))
    try:
        assert orphan.container_name not in await asyncio.to_thread(reap)  # too young
        removed = await asyncio.to_thread(reap, 0)
        assert orphan.container_name in removed
        assert alive.container_name not in removed
        names = {c.name for c in client().containers.list(all=True)}
        assert orphan.container_name not in names and alive.container_name in names
        assert not orphan.sockdir.root.exists()
        assert not (X11_DIR / f"X{orphan.display_number}").is_symlink()
    finally:
        await orphan.stop()
        await alive.stop()


async def test_missing_image_says_how_to_build_it() -> None:
    with pytest.raises(ImageNotFoundError, match="orchestrator image build") as err:
        await Desktop.start(DesktopSpec(image="orchestrator-desktop:does-not-exist"))
    assert isinstance(err.value, ConfigError)  # bad input: retrying does not help


async def test_a_spec_docker_refuses_is_bad_input_and_leaves_nothing(
    desktop_image: str, operator_env: Callable[..., None]
) -> None:
    # An operator who lifts the maxima and the image allow-list: Docker itself refuses.
    operator_env(ORCHESTRATOR_DESKTOP_MAX_CPUS="1000", ORCHESTRATOR_DESKTOP_IMAGES="*")
    before = {c.id for c in client().containers.list(all=True)}
    links = set(X11_DIR.glob("X*"))
    sockdirs = settings().runtime_dir / "desktops"
    dirs = set(sockdirs.iterdir()) if sockdirs.exists() else set()
    with pytest.raises(DockerRefusedError, match="CPUs") as err:
        await Desktop.start(DesktopSpec(image=desktop_image, cpus=(os.cpu_count() or 1) + 62))
    assert isinstance(err.value, ConfigError) and "http" not in str(err.value).lower()
    assert {c.id for c in client().containers.list(all=True)} <= before
    assert set(X11_DIR.glob("X*")) <= links
    assert (set(sockdirs.iterdir()) if sockdirs.exists() else set()) <= dirs
    with pytest.raises(DockerRefusedError, match="invalid reference format"):
        await Desktop.start(DesktopSpec(image="Not A Valid Name!"))


async def test_live_view_serves_novnc_on_loopback_only(desktop: Desktop) -> None:
    import urllib.request

    view = await desktop.live_view()
    assert view.url.startswith("http://127.0.0.1:")
    assert len(view.password) == 8
    page = await asyncio.to_thread(
        lambda: urllib.request.urlopen(view.url.split("?")[0], timeout=10).read()
    )
    assert b"noVNC" in page


async def test_no_desktop_files_readable_by_other_users(desktop: Desktop) -> None:
    mode = os.stat(desktop.sockdir.root).st_mode & 0o777
    assert mode == 0o700
    assert (os.stat(Path(desktop.sockdir.run, "vnc.passwd")).st_mode & 0o077) == 0


async def test_wait_until_settled_returns_once_the_screen_is_still(desktop: Desktop) -> None:
    assert await eventually(lambda: desktop.wait_until_settled(timeout_s=5), what="settled")
