"""``_hostfs``: the host never reads, writes or connects through a link or look-alike a
container planted in its directories (no container here: planted by the test itself; the
peer check against a real container is in tests/integration/test_host_paths.py)."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from orchestrator.desktop import _display, _hostfs
from orchestrator.desktop._container import failure_reason
from orchestrator.desktop._reaper import _is_ours
from orchestrator.errors import DesktopError, UntrustedPathError

SECRET = b"host secret: never to be read through a desktop's directory\n"
CONTAINER = "ab" * 32  # a well-formed id no process of this machine runs in


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """A stand-in for ``<sockdir>/run`` (short: unix socket paths max 107 bytes)."""
    root = Path(tempfile.mkdtemp(prefix="hf-"))
    (root / "run").mkdir()
    yield root / "run"
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def host_file(tmp_path: Path) -> Path:
    path = tmp_path / "host-secret"
    path.write_bytes(SECRET)
    return path


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[socket.socket]:
    """A socket this test process listens on: a stand-in for a host service."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(tmp_path / "host.sock"))
    s.listen(8)
    s.setblocking(False)
    yield s
    s.close()


def _accepted(s: socket.socket) -> socket.socket | None:
    try:
        conn, _ = s.accept()
    except BlockingIOError:
        return None
    return conn


# ---------------------------------------------------------------------- reads


def test_reads_a_regular_file_and_none_when_absent(run_dir: Path) -> None:
    (run_dir / "ready").write_bytes(b'{"ok": 1}\n')
    assert _hostfs.read_file(run_dir / "ready", max_bytes=100) == b'{"ok": 1}\n'
    assert _hostfs.read_file(run_dir / "failed", max_bytes=100) is None


def test_a_symlink_to_a_host_file_is_refused_not_read(run_dir: Path, host_file: Path) -> None:
    for name in ("ready", "failed", "ssh_host_key.pub"):
        (run_dir / name).symlink_to(host_file)
        with pytest.raises(UntrustedPathError, match="symbolic link") as err:
            _hostfs.read_file(run_dir / name, max_bytes=1 << 20)
        assert SECRET.decode().strip() not in str(err.value)
        assert str(host_file) not in str(err.value)  # no host path in what a tenant may see
        assert isinstance(err.value, DesktopError)


def test_a_fifo_is_refused_without_blocking(run_dir: Path) -> None:
    os.mkfifo(run_dir / "ready")
    t0 = time.monotonic()
    with pytest.raises(UntrustedPathError, match="FIFO"):
        _hostfs.read_file(run_dir / "ready", max_bytes=100)
    assert time.monotonic() - t0 < 1


def test_a_socket_a_directory_or_too_much_is_refused(
    run_dir: Path, listener: socket.socket
) -> None:
    os.link(listener.getsockname(), run_dir / "ready")  # a socket where a file should be
    with pytest.raises(UntrustedPathError, match="socket"):
        _hostfs.read_file(run_dir / "ready", max_bytes=100)
    (run_dir / "failed").mkdir()
    with pytest.raises(UntrustedPathError, match="directory"):
        _hostfs.read_file(run_dir / "failed", max_bytes=100)
    (run_dir / "big").write_bytes(b"x" * 101)
    with pytest.raises(UntrustedPathError, match="larger than 100"):
        _hostfs.read_file(run_dir / "big", max_bytes=100)


def test_a_linked_directory_is_refused(run_dir: Path, host_file: Path) -> None:
    (run_dir / "sub").symlink_to(host_file.parent, target_is_directory=True)
    with pytest.raises(UntrustedPathError, match="not a plain directory"):
        _hostfs.read_file(run_dir / "sub" / host_file.name, max_bytes=1 << 20)


# ---------------------------------------------------------------------- writes


def test_writes_replace_a_planted_symlink_and_never_follow_it(
    run_dir: Path, host_file: Path
) -> None:
    (run_dir / "authorized_keys").symlink_to(host_file)
    (run_dir / "vnc.passwd").symlink_to(host_file)
    old_umask = os.umask(0o077)
    try:
        _hostfs.write_file(run_dir / "authorized_keys", b"ssh-ed25519 AAAA\n", mode=0o644)
        _hostfs.write_file(run_dir / "vnc.passwd", b"pw\n", mode=0o600)
    finally:
        os.umask(old_umask)
    assert host_file.read_bytes() == SECRET  # the link's target is untouched
    for name, mode, data in (
        ("authorized_keys", 0o644, b"ssh-ed25519 AAAA\n"),
        ("vnc.passwd", 0o600, b"pw\n"),
    ):
        st = os.lstat(run_dir / name)
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == mode
        assert (run_dir / name).read_bytes() == data


# ---------------------------------------------------------------------- sockets


def test_a_symlink_to_a_socket_is_refused_before_connecting(
    run_dir: Path, listener: socket.socket
) -> None:
    for name in ("novnc.sock", "ssh.sock", "X0"):
        (run_dir / name).symlink_to(listener.getsockname())
        with pytest.raises(UntrustedPathError, match="symbolic link"):
            _hostfs.connect_socket(run_dir / name, CONTAINER)
    assert _accepted(listener) is None  # the host service never saw a connection


def test_a_symlink_to_the_docker_socket_is_refused(run_dir: Path) -> None:
    docker = Path("/var/run/docker.sock")
    if not docker.exists():
        pytest.skip("no Docker socket here")
    (run_dir / "novnc.sock").symlink_to(docker)
    with pytest.raises(UntrustedPathError, match="symbolic link"):
        _hostfs.connect_socket(run_dir / "novnc.sock", CONTAINER)


def test_a_look_alike_socket_is_refused_by_its_listener(
    run_dir: Path, listener: socket.socket
) -> None:
    """A real socket in the directory whose listener is not a process of the container
    (here: this test): connected, then refused before one byte is sent."""
    os.link(listener.getsockname(), run_dir / "novnc.sock")  # hard link: the same socket
    with pytest.raises(UntrustedPathError, match="not a process of the desktop"):
        _hostfs.connect_socket(run_dir / "novnc.sock", CONTAINER)
    conn = _accepted(listener)
    assert conn is not None
    conn.settimeout(5)
    assert conn.recv(100) == b""  # closed by the host, nothing sent
    conn.close()


def test_a_file_where_a_socket_should_be_is_refused(run_dir: Path) -> None:
    (run_dir / "ssh.sock").write_bytes(b"")
    with pytest.raises(UntrustedPathError, match="regular file, not a socket"):
        _hostfs.pin_socket(run_dir / "ssh.sock")
    with pytest.raises(FileNotFoundError):
        _hostfs.pin_socket(run_dir / "missing.sock")


def test_a_pin_reaches_the_checked_socket_even_after_a_swap(run_dir: Path) -> None:
    first = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    first.bind(str(run_dir / "X0"))
    first.listen(1)
    first.setblocking(False)
    pin = _hostfs.pin_socket(run_dir / "X0")
    os.unlink(run_dir / "X0")  # the container puts another socket in its place
    second = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    second.bind(str(run_dir / "X0"))
    second.listen(1)
    second.setblocking(False)
    try:
        with pytest.raises(UntrustedPathError):
            pin.connect(CONTAINER)
        assert _accepted(first) is not None and _accepted(second) is None
    finally:
        pin.close()
        first.close()
        second.close()


def test_the_peer_must_be_named_by_a_full_container_id(listener: socket.socket) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(listener.getsockname())
    with pytest.raises(ValueError, match="full container id"):
        _hostfs.check_peer(s, "abc123", Path("run/x"))
    s.close()


@pytest.mark.parametrize(
    ("cgroups", "inside"),
    [
        (f"12:pids:/docker/{CONTAINER}\n0::/docker/{CONTAINER}\n", True),  # cgroupfs driver
        (f"0::/system.slice/docker-{CONTAINER}.scope\n", True),  # systemd driver
        (f"0::/docker/{CONTAINER}/init.scope\n", True),  # a nested cgroup of the container
        ("0::/user.slice/user-0.slice/session-1.scope\n", False),  # a host process
        (f"0::/docker/{CONTAINER[:-1]}0\n", False),  # another container
        (f"0::/docker/x{CONTAINER}\n", False),
        ("", False),
    ],
)
def test_cgroup_membership(cgroups: str, inside: bool) -> None:
    assert _hostfs._in_container(cgroups, CONTAINER) is inside


# ---------------------------------------------------------------------- messages, displays, reaper


def test_failure_reasons_lose_control_characters() -> None:
    raw = b'{"reason": "xvfb died \\u001b]0;owned\\u0007 \\u202eevil\\u0000"}\n'
    assert failure_reason(raw) == "xvfb died ]0;owned evil"
    assert failure_reason(b"\x1b[2Jplain text\r\n") == "[2Jplain text"
    assert len(failure_reason(b"y" * 100_000)) == 2000


def test_display_links_point_at_a_pin_and_are_judged_without_connecting(
    run_dir: Path, listener: socket.socket
) -> None:
    x_socket = run_dir / "X0"
    os.link(listener.getsockname(), x_socket)
    pin = _hostfs.pin_socket(x_socket)
    n = _display.allocate_display(pin.proc_path, 6100 + os.getpid() % 500)
    link = _display.X11_DIR / f"X{n}"
    try:
        assert os.readlink(link) == pin.proc_path
        assert not _display._is_stale(link)
        listener.close()  # a dead listener no longer makes a link stale: no connect at all
        assert not _display._is_stale(link)
        _display.release_display(n, run_dir / "other")
        assert link.is_symlink()  # another socket's: left alone
        _display.release_display(n, x_socket)  # matched through the pin
        assert not link.is_symlink()
        n2 = _display.allocate_display(pin.proc_path, n)
        assert n2 == n
        pin.close()
        assert _display._is_stale(link)  # the pin is gone
    finally:
        pin.close()
        _display.release_display(n)


def test_the_reaper_removes_only_plain_directories_under_desktops(
    tmp_path: Path, operator_env: Callable[..., None]
) -> None:
    operator_env(ORCHESTRATOR_RUNTIME_DIR=str(tmp_path))
    desktops = tmp_path / "desktops"
    (desktops / "ab12cd34ef").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (desktops / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    assert _is_ours(desktops / "ab12cd34ef")
    for path in (
        desktops / "linked",
        desktops / ".." / "elsewhere",
        tmp_path / "elsewhere",
        desktops,
        Path("desktops/ab12cd34ef"),
        Path("/"),
        desktops / f"missing-{secrets.token_hex(4)}",
    ):
        assert not _is_ours(path), path
