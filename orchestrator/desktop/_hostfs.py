"""The one way the host touches a desktop's shared directories: never through what the
container planted there.

``<sockdir>/run`` (the container's ``/run/desktop``) and ``<sockdir>/x11`` (its
``/tmp/.X11-unix``, mode 1777) are written by the container: root in it, and the agent user
in ``x11``, can put a symbolic link, a FIFO or a socket of their own under any name the host
uses (a link ``novnc.sock -> /var/run/docker.sock`` once turned the live view into the
Docker API). So every host-side read, write and connect there goes through this module,
which acts only on the directory entry itself, and only on the kind of entry it expects:

- reads (``ready``, ``failed``, ``ssh_host_key.pub``): ``openat`` with ``O_NOFOLLOW`` (and
  ``O_NONBLOCK``: a FIFO cannot stall the host) relative to the directory opened
  ``O_DIRECTORY|O_NOFOLLOW``; ``fstat`` must say regular file; the size is capped;
- writes (``authorized_keys``, ``vnc.passwd``): the entry is removed, then created
  ``O_CREAT|O_EXCL|O_NOFOLLOW`` with an explicit mode;
- sockets (``ssh.sock``, ``novnc.sock``, ``x11/X0``): the entry is pinned with
  ``O_PATH|O_NOFOLLOW`` (a link pins the link itself, refused), ``fstat`` must say socket,
  the connection goes to ``/proc/self/fd/<pin>`` (exactly the inode checked, whatever the
  name points to by then), and the listener's credentials (``SO_PEERCRED``, a pid in the
  host's pid namespace) must name a process of the desktop's own container, by the
  container id in ``/proc/<pid>/cgroup``, before the host sends one byte. That needs no
  privilege: it works the same when the runtime is not root.

Anything else raises ``UntrustedPathError`` (logged). Messages name the entry relative to
the desktop (``run/novnc.sock``), not host paths: they may reach a tenant.

Example:
    >>> info = read_file(sockdir.run / "ready", max_bytes=64 * 1024)  # doctest: +SKIP
    >>> s = connect_socket(sockdir.run / "ssh.sock", container_id)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import socket
import stat
import struct
from collections.abc import Iterator
from pathlib import Path

from ..errors import UntrustedPathError

__all__ = [
    "PinnedSocket",
    "check_peer",
    "connect_socket",
    "pin_socket",
    "read_file",
    "write_file",
]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
"""The longest a connect to a desktop's socket may take (a full backlog)."""

_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
_CONTAINER_ID = re.compile(r"[0-9a-f]{64}")
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _name(path: Path) -> str:
    """The entry as the desktop knows it (``run/ready``), for messages."""
    return f"{path.parent.name}/{path.name}"


def _refuse(path: Path, why: str) -> UntrustedPathError:
    message = f"refused the desktop's {_name(path)}: {why}"
    log.warning("%s (%s)", message, path)
    return UntrustedPathError(message)


def _kind(mode: int) -> str:
    for test, what in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
    ):
        if test(mode):
            return what
    return "a device or other special file"


@contextlib.contextmanager
def _parent(path: Path) -> Iterator[int]:
    """The directory holding ``path``, opened without following a link in its place."""
    try:
        fd = os.open(path.parent, _DIR_FLAGS)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _refuse(path, "its directory is not a plain directory") from e
        raise
    try:
        yield fd
    finally:
        os.close(fd)


# ---------------------------------------------------------------------- files


def read_file(path: Path, *, max_bytes: int) -> bytes | None:
    """The contents of the regular file ``path`` (None when there is none), at most
    ``max_bytes``; a link, FIFO, socket or larger file there is refused."""
    with _parent(path) as dir_fd:
        try:
            fd = os.open(path.name, _READ_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            return None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise _refuse(path, "it is a symbolic link") from e
            if e.errno == errno.ENXIO:
                raise _refuse(path, "it is a socket, not a regular file") from e
            raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(path, f"it is {_kind(st.st_mode)}, not a regular file")
        if st.st_size > max_bytes:
            raise _refuse(path, f"it is larger than {max_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, max_bytes + 1 - size):
            chunks.append(chunk)
            size += len(chunk)
            if size > max_bytes:
                raise _refuse(path, f"it is larger than {max_bytes} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def write_file(path: Path, data: bytes, *, mode: int) -> None:
    """Replace whatever entry ``path`` names with a new regular file holding ``data``
    (created exclusively, never through a link; ``mode`` exactly, whatever the umask)."""
    with _parent(path) as dir_fd:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path.name, dir_fd=dir_fd)  # the entry itself, never what it names
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(path.name, flags, 0o600, dir_fd=dir_fd)
        except FileExistsError as e:
            raise _refuse(path, "something was put there while the host wrote it") from e
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


# ---------------------------------------------------------------------- sockets


class PinnedSocket:
    """An ``O_PATH`` handle on one socket inode in a desktop's directory, checked to be a
    socket (not a link): connecting through ``proc_path`` reaches that inode only.

    Example:
        >>> pin = pin_socket(sockdir.x_socket)  # doctest: +SKIP
        >>> s = pin.connect(container_id)  # doctest: +SKIP
        >>> pin.close()  # doctest: +SKIP
    """

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path
        """The name it was pinned by (for messages)."""

    @property
    def proc_path(self) -> str:
        """``/proc/<pid>/fd/<fd>``: a name for the pinned inode that other code (libX11)
        can be given; only this process (and root) can follow it."""
        return f"/proc/{os.getpid()}/fd/{self.fd}"

    def connect(self, container_id: str, *, timeout_s: float = CONNECT_TIMEOUT_S) -> socket.socket:
        """A connected stream socket whose listener is a process of ``container_id``."""
        if self.fd < 0:
            raise RuntimeError("the pinned socket is closed")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(timeout_s)
            s.connect(f"/proc/self/fd/{self.fd}")
            check_peer(s, container_id, self.path)
        except BaseException:
            s.close()
            raise
        return s

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> PinnedSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pin_socket(path: Path) -> PinnedSocket:
    """Pin the socket ``path`` names (``FileNotFoundError`` when there is none yet); a link
    or anything but a socket there is refused."""
    with _parent(path) as dir_fd:
        fd = os.open(path.name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISSOCK(mode):
            raise _refuse(path, f"it is {_kind(mode)}, not a socket")
    except BaseException:
        os.close(fd)
        raise
    return PinnedSocket(fd, path)


def connect_socket(
    path: Path, container_id: str, *, timeout_s: float = CONNECT_TIMEOUT_S
) -> socket.socket:
    """Connect to the socket ``path`` names, served by a process of ``container_id``
    (blocking; ``FileNotFoundError``/``ConnectionRefusedError`` while it is not up)."""
    with pin_socket(path) as pin:
        return pin.connect(container_id, timeout_s=timeout_s)


def check_peer(sock: socket.socket, container_id: str, path: Path) -> None:
    """Refuse a connected unix socket whose listener is not a process of ``container_id``.

    ``SO_PEERCRED`` gives the pid that listened, in this process's pid namespace; its
    ``/proc/<pid>/cgroup`` names the container it runs in (``/docker/<id>`` with the
    cgroupfs driver, ``docker-<id>.scope`` with systemd's), which no process in a container
    can change. The check needs the desktops' processes visible in this pid namespace (a
    runtime inside another container's pid namespace sees pid 0 and refuses everything).
    """
    if not _CONTAINER_ID.fullmatch(container_id):
        raise ValueError(f"not a full container id: {container_id!r}")
    pid, _uid, _gid = _CRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size)
    )
    if pid <= 0:
        raise _refuse(path, "its listener is not visible from the host")
    try:
        with open(f"/proc/{pid}/cgroup", encoding="ascii", errors="replace") as f:
            cgroups = f.read(64 * 1024)
    except OSError as e:
        raise _refuse(path, f"its listener (pid {pid}) is gone") from e
    if not _in_container(cgroups, container_id):
        raise _refuse(path, f"its listener (pid {pid}) is not a process of the desktop")


def _in_container(cgroups: str, container_id: str) -> bool:
    """Whether a ``/proc/<pid>/cgroup`` text puts the process in the container."""
    for line in cgroups.splitlines():
        cgroup_path = line.split(":", 2)[-1]
        for part in cgroup_path.split("/"):
            if part.removeprefix("docker-").removesuffix(".scope") == container_id:
                return True
    return False
