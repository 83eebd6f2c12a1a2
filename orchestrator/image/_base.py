"""The base image: local, else pulled (bounded), else debootstrapped from Debian packages.

A machine without a container registry still has Debian's package mirror (apt uses it):
``debootstrap --variant=minbase bookworm`` from that mirror, then ``docker import``.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import docker.errors
import requests.exceptions

from .._docker import client, translate_errors
from ..errors import ImageBuildError
from ._apt import DebianMirrors, debian_mirrors, read_sources

__all__ = [
    "DEBOOTSTRAP_BASE",
    "DEFAULT_BASE",
    "SUITE",
    "debootstrap_base",
    "ensure_base",
    "image_exists",
]

Progress = Callable[[str], None]

SUITE = "bookworm"
DEFAULT_BASE = "debian:bookworm-slim"
DEBOOTSTRAP_BASE = "orchestrator-base:bookworm"

PULL_IDLE_TIMEOUT_S = 20.0
"""A pull that reports nothing for this long is given up (no registry answers)."""
PULL_TIMEOUT_S = 600.0
DEBOOTSTRAP_TIMEOUT_S = 1200.0
_PER_PACKAGE = re.compile(
    r"^([A-Z][a-z]+) [a-z0-9][a-z0-9+.\-]*(:[a-z0-9]+)?( [0-9]\S*)?(\.\.\.)?$"
)
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def image_exists(name: str) -> bool:
    """The image ``name`` is on this machine."""
    with translate_errors(f"looking up image {name}"):
        try:
            client().images.get(name)
        except docker.errors.ImageNotFound:
            return False
    return True


def ensure_base(
    base_image: str | None, progress: Progress, *, mirrors: DebianMirrors | None = None
) -> str:
    """The name of a local base image to build on, making one if needed.

    ``base_image`` None means ``debian:bookworm-slim`` and allows the debootstrap
    fallback; an explicitly named base that is neither local nor pullable is an error
    (except ``orchestrator-base:bookworm``, which is debootstrapped).
    """
    wanted = base_image or DEFAULT_BASE
    if image_exists(wanted):
        progress(f"base image {wanted}: on this machine")
        return wanted
    if wanted != DEBOOTSTRAP_BASE:
        progress(f"base image {wanted}: pulling")
        try:
            _pull(wanted, progress)
            return wanted
        except _PullFailed as e:
            if base_image not in (None, DEFAULT_BASE):
                raise ImageBuildError(f"cannot pull the base image {wanted}: {e}") from e
            progress(f"cannot pull {wanted} ({e}); building a Debian {SUITE} base instead")
    if image_exists(DEBOOTSTRAP_BASE):
        progress(f"base image {DEBOOTSTRAP_BASE}: on this machine")
        return DEBOOTSTRAP_BASE
    debootstrap_base(progress, mirrors=mirrors)
    return DEBOOTSTRAP_BASE


class _PullFailed(Exception):
    pass


def _pull(name: str, progress: Progress) -> None:
    """Pull ``name``; give up when the engine reports nothing for a while (no registry)."""
    repo, _, tag = name.rpartition(":") if ":" in name.split("/")[-1] else (name, "", "latest")
    events: queue.Queue[dict[str, Any] | BaseException | None] = queue.Queue()

    def worker() -> None:
        try:
            for ev in client().api.pull(repo, tag=tag, stream=True, decode=True):
                events.put(ev)
            events.put(None)
        except BaseException as e:  # noqa: BLE001 - handed to the waiting thread
            events.put(e)

    threading.Thread(target=worker, name="orchestrator-pull", daemon=True).start()
    deadline = time.monotonic() + PULL_TIMEOUT_S
    last_status = ""
    while True:
        wait = min(PULL_IDLE_TIMEOUT_S, deadline - time.monotonic())
        if wait <= 0:
            raise _PullFailed(f"no result after {PULL_TIMEOUT_S:.0f} s")
        try:
            ev = events.get(timeout=wait)
        except queue.Empty:
            raise _PullFailed(f"no answer for {wait:.0f} s") from None
        if ev is None:
            return
        if isinstance(ev, docker.errors.APIError):
            raise _PullFailed(str(ev.explanation or ev)) from ev
        if isinstance(ev, requests.exceptions.RequestException | docker.errors.DockerException):
            raise _PullFailed(str(ev)) from ev
        if isinstance(ev, BaseException):
            raise ev
        if "error" in ev:
            raise _PullFailed(str(ev["error"]))
        status = str(ev.get("status", ""))
        if status and not ev.get("id") and status != last_status:  # not per-layer chatter
            last_status = status
            progress(f"  {status}")


# -- debootstrap ------------------------------------------------------------------------


def debootstrap_base(
    progress: Progress, *, mirrors: DebianMirrors | None = None, tag: str = DEBOOTSTRAP_BASE
) -> None:
    """Make ``tag`` from Debian packages: debootstrap a minbase root, then docker import."""
    exe = shutil.which("debootstrap")
    if exe is None:
        raise ImageBuildError(
            "no registry answers and debootstrap is missing to build a base image from "
            "Debian packages: apt-get install debootstrap (or make debian:bookworm-slim "
            "available: docker pull / docker load)"
        )
    if os.geteuid() != 0:
        raise ImageBuildError(
            "building a base image with debootstrap needs root: run `orchestrator image "
            "build` as root once (or make debian:bookworm-slim available)"
        )
    if mirrors is None:
        try:
            mirrors = debian_mirrors(read_sources(), SUITE)
        except LookupError as e:
            raise ImageBuildError(
                f"cannot find a Debian mirror in /etc/apt/sources.list(.d): {e}"
            ) from e
    tmp = Path(tempfile.mkdtemp(prefix="orchestrator-rootfs-", dir="/var/tmp"))
    rootfs = tmp / "rootfs"
    try:
        cmd = [exe, "--variant=minbase"]
        if mirrors.needs_ca_certificates:
            cmd.append("--include=ca-certificates")
        cmd += [SUITE, str(rootfs), mirrors.main]
        progress(f"debootstrap {SUITE} from {mirrors.main} (about a minute)")
        t0 = time.monotonic()
        _run_debootstrap(cmd, progress)
        progress(f"debootstrap done in {time.monotonic() - t0:.0f} s")
        _finish_rootfs(rootfs, mirrors)
        _import(rootfs, tag, progress)
    finally:
        _unmount_under(rootfs)
        shutil.rmtree(tmp, ignore_errors=True)


def _run_debootstrap(cmd: list[str], progress: Progress) -> None:
    """Run debootstrap, showing one line per phase (not one per package)."""
    tail: deque[str] = deque(maxlen=30)
    env = {**os.environ, "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"}
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env=env,
        )
    except OSError as e:
        raise ImageBuildError(f"cannot run debootstrap: {e}") from e
    timer = threading.Timer(DEBOOTSTRAP_TIMEOUT_S, proc.kill)
    timer.start()
    try:
        assert proc.stdout is not None
        for line in _phases(proc.stdout, tail):
            progress(f"  debootstrap: {line}")
        code = proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if code != 0:
        why = "timed out" if code == -9 else f"exit status {code}"
        raise ImageBuildError(f"debootstrap failed ({why}):\n" + "\n".join(tail))


def _phases(lines: Iterable[str], tail: deque[str]) -> Iterator[str]:
    """Lines worth showing: debootstrap's ``I:`` lines except the per-package ones after
    the first of each verb (``Retrieving adduser 3.134``), and its errors and warnings."""
    shown_verbs: set[str] = set()
    for raw in lines:
        line = raw.rstrip()
        if not line:
            continue
        tail.append(line)
        if line.startswith("I: "):
            text = line[3:]
            m = _PER_PACKAGE.match(text)
            if m is None:
                yield text
            elif m.group(1) not in shown_verbs:
                shown_verbs.add(m.group(1))
                yield f"{m.group(1)} packages..."
        elif line.startswith(("E: ", "W: ")):
            yield line


def _finish_rootfs(rootfs: Path, mirrors: DebianMirrors) -> None:
    """Point apt at the machine's mirror (+updates/security), drop caches and host files."""
    apt = rootfs / "etc/apt"
    (apt / "sources.list").write_text(
        "# Written by `orchestrator image build` from this machine's apt sources.\n"
        + mirrors.sources_list(SUITE)
    )
    for path in (apt / "sources.list.d").glob("*"):
        path.unlink()
    for pattern in ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*"):
        for path in rootfs.glob(pattern):
            if path.is_file():
                path.unlink()
    # debootstrap copies these from the host; Docker provides its own at run time.
    (rootfs / "etc/hostname").write_text("localhost\n")
    (rootfs / "etc/resolv.conf").write_text("")


def _import(rootfs: Path, tag: str, progress: Progress) -> None:
    repo, _, version = tag.partition(":")
    progress(f"docker import -> {tag}")
    tar = subprocess.Popen(
        [
            "tar",
            "--numeric-owner",
            "--xattrs",
            "--one-file-system",
            "-C",
            str(rootfs),
            "-cf",
            "-",
            ".",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert tar.stdout is not None
    try:
        with translate_errors(f"importing {tag}"):
            client().api.import_image_from_stream(
                tar.stdout,
                repository=repo,
                tag=version or "latest",
                changes=[f"ENV PATH={_PATH}", 'CMD ["/bin/bash"]'],
            )
    finally:
        tar.stdout.close()
        err = (tar.stderr.read() if tar.stderr else b"").decode(errors="replace")
        code = tar.wait()
    if code != 0:
        raise ImageBuildError(f"tar of the debootstrapped root failed ({code}): {err[-2000:]}")
    if not image_exists(tag):
        raise ImageBuildError(f"docker import reported success but {tag} is missing")


def _unmount_under(path: Path) -> None:
    """Unmount anything a failed debootstrap left mounted inside ``path`` (deepest first)."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return
    prefix = str(path) + "/"
    targets = [m.split()[1] for m in mounts if len(m.split()) > 1]
    inside = [t for t in targets if t.startswith(prefix) or t == str(path)]
    for target in sorted(inside, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)
