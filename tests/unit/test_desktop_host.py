"""Host-side pieces of desktops that need no container: owners, display numbers, specs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.desktop import DesktopSpec
from orchestrator.desktop._display import X11_DIR, allocate_display, release_display
from orchestrator.desktop._owner import owner_is_alive, process_owner, register_owner_kind


def test_this_process_is_alive_and_a_finished_one_is_not() -> None:
    assert owner_is_alive(process_owner())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    owner = process_owner(child.pid)
    child.wait()
    assert not owner_is_alive(owner)


def test_a_reused_pid_is_not_the_same_owner() -> None:
    kind, boot, pid, ticks = process_owner().split(":")
    assert not owner_is_alive(f"{kind}:{boot}:{pid}:{int(ticks) + 1}")
    assert not owner_is_alive(f"{kind}:another-boot:{pid}:{ticks}")


def test_unknown_owner_kinds_count_as_alive_and_kinds_can_be_registered() -> None:
    assert owner_is_alive("martian:whatever")
    register_owner_kind("test-dead", lambda details: False)
    assert not owner_is_alive("test-dead:x")
    assert not owner_is_alive("process:garbage")


@pytest.fixture
def listening_socket(tmp_path: Path):
    path = tmp_path / "X0"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.listen(1)
    yield path
    s.close()


def test_display_numbers_are_unique_and_released(listening_socket: Path) -> None:
    base = 4100 + os.getpid() % 500
    a = allocate_display(listening_socket, base)
    b = allocate_display(listening_socket, base)
    try:
        assert a != b
        assert os.readlink(X11_DIR / f"X{a}") == str(listening_socket)
        assert Path(f"/tmp/.X{a}-lock").read_text().strip() == str(os.getpid())
    finally:
        release_display(a, listening_socket)
        release_display(b, listening_socket)
    assert not (X11_DIR / f"X{a}").is_symlink()
    assert not Path(f"/tmp/.X{a}-lock").exists()


def test_stale_display_links_are_reclaimed(tmp_path: Path, listening_socket: Path) -> None:
    base = 4700 + os.getpid() % 500
    gone = tmp_path / "gone" / "X0"
    stale = allocate_display(gone, base)  # its target does not exist
    n = allocate_display(listening_socket, base)
    try:
        assert n == stale
        assert os.readlink(X11_DIR / f"X{n}") == str(listening_socket)
    finally:
        release_display(n, listening_socket)


def test_release_leaves_a_link_that_points_elsewhere(
    tmp_path: Path, listening_socket: Path
) -> None:
    n = allocate_display(listening_socket, 5300 + os.getpid() % 500)
    try:
        release_display(n, tmp_path / "other")
        assert (X11_DIR / f"X{n}").is_symlink()
    finally:
        release_display(n, listening_socket)


def test_spec_rejects_nonsense_with_clear_errors() -> None:
    with pytest.raises(ValidationError, match="width"):
        DesktopSpec(width=10)
    with pytest.raises(ValidationError, match="network"):
        DesktopSpec(network="host")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="extra"):
        DesktopSpec(privileged=True)  # type: ignore[call-arg]
    assert DesktopSpec().width == 1280 and DesktopSpec().height == 800


def test_docker_created_stamps_parse_to_epoch_seconds() -> None:
    from orchestrator.desktop._reaper import _created

    assert _created("2026-12-01T21:00:47.539694814Z") == pytest.approx(1796158847.539694814)
    assert _created("2026-12-01T21:00:47Z") == 1796158847.0
    assert _created("") == 0.0 and _created("not a time") == 0.0
