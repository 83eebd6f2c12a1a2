"""``Desktop``: the handle an agent holds on its own Linux desktop container.

Screenshots and GUI actions go over the desktop's X socket (shared through a bind-mounted
directory, no IP traffic) on one dedicated thread; shell commands and files go over one
persistent SSH connection through a unix socket; the live view is a loopback-only proxy to
the container's noVNC socket.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import socket
import time
import zlib
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar

from .. import actions as a
from ..config import settings
from ..coords import check_screenshot_size
from ..errors import DesktopError, DesktopGoneError, DisplayError, ShellError, UntrustedPathError
from ..image import default_image
from . import _container, _hostfs
from ._admission import start_slot
from ._display import allocate_display, point_display, release_display
from ._limits import check_desktop
from ._liveview import LIVE_VIEW_OFF, LiveView, LiveViewProxy
from ._owner import process_owner
from ._reaper import reap_in_background
from ._screen import Frame, ImageFormat, Scaling, Screenshot, encode
from ._shell_link import ShellLink
from ._spec import DesktopSpec
from ._x11 import X11Session

if TYPE_CHECKING:  # asyncssh is imported on first use, off a start's critical path
    from ._asyncssh import asyncssh
    from ._ssh import ShellSession

__all__ = ["Desktop", "LiveView", "Screenshot"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_SHELL_FAILURES = (ShellError, UntrustedPathError, OSError)
"""What a command or transfer raises when the container is gone: a lost connection, or a
reconnect that finds no container owning the socket (then ``DesktopGoneError`` instead)."""


class Desktop:
    """A real Linux desktop in a hardened Docker container, driven at X-server speed.

    Example:
        >>> import asyncio
        >>> from orchestrator import Desktop, actions
        >>> async def demo() -> None:
        ...     async with await Desktop.start() as desk:
        ...         await desk.act(actions.KeyPress(keys=["ctrl", "alt", "t"]))
        ...         print((await desk.run("echo hi")).stdout)
        ...         png = (await desk.screenshot()).data
    """

    def __init__(
        self,
        *,
        desktop_id: str,
        spec: DesktopSpec,
        image: str,
        owner: str,
        sockdir: _container.SocketDir,
    ) -> None:
        self.id = desktop_id
        self.spec = spec
        self.image = image
        self.owner = owner
        self.sockdir = sockdir
        self.container_id: str | None = None
        self.container_name = f"orchestrator-desktop-{desktop_id}"
        self.display_number: int | None = None
        self._key: asyncssh.SSHKey | None = None
        self._key_data: bytes | None = None  # the private key of a desktop handed over
        self._vnc_password = secrets.token_urlsafe(8)[:8]  # RFB auth uses 8 characters
        self._x: X11Session | None = None
        self._x_pin: _hostfs.PinnedSocket | None = None  # the X socket the display links to
        self._x_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"x11-{desktop_id}")
        self._shell = ShellLink(desktop_id, sockdir.run, lambda: self._client_key)
        self._live: LiveViewProxy | None = None
        self._closed = False
        self.ready_info: dict[str, Any] = {}

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def start(
        cls,
        spec: DesktopSpec | None = None,
        *,
        owner: str | None = None,
        labels: dict[str, str] | None = None,
        ready_timeout_s: float | None = None,
        on_queued: Callable[[], Awaitable[None]] | None = None,
    ) -> Self:
        """Start a desktop and return once it is ready (X, window manager, VNC and SSH up).

        ``owner`` is written on the container (default: this process) so that the reaper can
        remove desktops whose owner is gone; ``labels`` are extra container labels. The start
        waits for one of the node's start slots first (see ``_admission``), awaiting
        ``on_queued`` if it has to; ``ready_timeout_s`` counts from when it has one.
        """
        spec = spec or DesktopSpec()
        check_desktop(spec)  # ConfigError over this node's maxima, before anything starts
        cfg = settings()
        reap_in_background()
        desktop_id = secrets.token_hex(5)
        desk = cls(
            desktop_id=desktop_id,
            spec=spec,
            image=spec.image or default_image(),
            owner=owner or process_owner(),
            sockdir=_container.SocketDir(cfg.runtime_dir / "desktops" / desktop_id),
        )
        try:
            async with start_slot(on_queued):
                await desk._launch(labels or {}, ready_timeout_s or cfg.desktop_ready_timeout_s)
        except BaseException:
            await desk.stop()
            raise
        return desk

    async def _launch(self, labels: dict[str, str], timeout_s: float) -> None:
        t0 = time.monotonic()
        await self._create(labels)
        await self._connect(timeout_s)
        log.info("desktop %s ready in %.2f s", self.id, time.monotonic() - t0)

    async def _create(self, labels: dict[str, str], holder: str | None = None) -> None:
        """Make the socket directory (with the owner file naming ``holder``, for a desktop
        handed over, see ``_handover``) and the secrets, then create the container."""
        self.sockdir.make()
        if holder is not None:
            self.sockdir.write_owner(holder)
        self._write_secrets()
        info = await asyncio.to_thread(
            _container.create,
            self.spec,
            self.image,
            self.container_name,
            self.sockdir,
            {
                **labels,
                "orchestrator.owner": self.owner,
                "orchestrator.desktop.id": self.id,
                "orchestrator.sockdir": str(self.sockdir.root),
            },
        )
        self.container_id = info.id

    def _write_secrets(self) -> None:
        # New files, never written through whatever the container may have put there.
        _hostfs.write_file(
            self.sockdir.run / "authorized_keys",
            self._client_key.export_public_key(),
            mode=0o644,
        )
        _hostfs.write_file(
            self.sockdir.run / "vnc.passwd", (self._vnc_password + "\n").encode(), mode=0o600
        )

    async def _connect(self, timeout_s: float) -> None:
        assert self.container_id is not None
        self.ready_info = await _container.wait_ready(self.sockdir, self.container_id, timeout_s)
        container_id, x_socket = self.container_id, self.sockdir.x_socket

        def open_x() -> X11Session:
            # Pin the X socket the desktop's own Xvfb listens on and point the host display
            # link at the pin: libX11 (mss) and python-xlib then reach that inode only.
            pin = _hostfs.pin_socket(x_socket)
            try:
                pin.connect(container_id).close()
                if self.display_number is None:
                    self.display_number = allocate_display(pin.proc_path, settings().display_base)
                else:
                    point_display(self.display_number, pin.proc_path)
            except BaseException:
                pin.close()
                raise
            previous, self._x_pin = self._x_pin, pin
            if previous is not None:
                previous.close()
            return X11Session(
                f":{self.display_number}",
                peer_check=lambda s: _hostfs.check_peer(s, container_id, x_socket),
            )

        self._x = await asyncio.get_running_loop().run_in_executor(self._x_thread, open_x)
        await self._shell.connect(timeout_s)  # in the background, see _shell_link

    @property
    def _client_key(self) -> asyncssh.SSHKey:
        """The SSH client key the container accepts: made (or read) on first use."""
        if self._key is None:
            from ._ssh_connection import client_key

            self._key = client_key(self._key_data)
        return self._key

    async def stop(self) -> None:
        """Remove the container and everything on the host that belonged to it."""
        if self._closed:
            return
        self._closed = True
        await self._disconnect()
        if self.container_id is not None:
            await asyncio.to_thread(_container.remove, self.container_id)
        if self.display_number is not None:
            release_display(self.display_number, self.sockdir.x_socket)
        if self._x_pin is not None:
            self._x_pin.close()
        self._x_thread.shutdown(wait=False)
        self.sockdir.remove()

    async def _disconnect(self) -> None:
        if self._live is not None:
            await self._live.close()
            self._live = None
        await self._shell.close()
        if self._x is not None:
            x, self._x = self._x, None
            await asyncio.get_running_loop().run_in_executor(self._x_thread, x.close)

    async def restart(self, ready_timeout_s: float | None = None) -> None:
        """Restart the container in place (a fresh desktop session, same files) and reconnect;
        a start like any other, so it waits for one of the node's start slots first."""
        self._check_open()
        assert self.container_id is not None
        await self._disconnect()
        self.sockdir.clear_markers()
        async with start_slot():
            await asyncio.to_thread(_container.restart, self.container_id)
            await self._connect(ready_timeout_s or settings().desktop_ready_timeout_s)

    async def is_alive(self) -> bool:
        """Whether the container is still running."""
        if self._closed or self.container_id is None:
            return False
        return await asyncio.to_thread(_container.state, self.container_id) == "running"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ screen and input

    @property
    def size(self) -> tuple[int, int]:
        """The screen size in pixels."""
        return (self.spec.width, self.spec.height)

    @property
    def display(self) -> str:
        """The host-side X display name of this desktop (e.g. ``:101``)."""
        if self.display_number is None:
            raise DesktopError("desktop is not started")
        return f":{self.display_number}"

    async def _on_x(self, fn: Any, *args: Any) -> Any:
        self._check_open()
        x = self._x
        if x is None:
            raise DisplayError(f"desktop {self.id} has no display connection")
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._x_thread, lambda: fn(x, *args)
            )
        except DisplayError as e:
            await self._raise_if_gone(e)
            raise

    async def grab(self) -> Frame:
        """The raw screen contents (BGRA), at X-server speed."""
        frame: Frame = await self._on_x(X11Session.grab)
        return frame

    async def screenshot(
        self,
        format: ImageFormat = "png",
        *,
        quality: int = 85,
        scaling: Scaling | None = None,
        size: tuple[int, int] | None = None,
    ) -> Screenshot:
        """Grab and encode the screen, optionally scaled to ``scaling``'s size, or resized to
        ``size`` (``(width, height)``: the size a model's coordinate space asks for).

        Only a given ``scaling`` comes back on the ``Screenshot``: a brain that asked for a
        ``size`` maps its points to screen pixels itself, so its screenshot carries none
        (passing one to ``act`` would map twice). A ``size`` over twice the screen's or 4096
        on either side is refused (``ConfigError``)."""
        out: tuple[int, int] | None = None
        if scaling is not None:
            out = (scaling.width, scaling.height)
        elif size is not None and size != self.size:
            check_screenshot_size(size, self.size)
            out = size
        frame = await self.grab()
        data = await asyncio.to_thread(encode, frame, format, quality=quality, size=out)
        w, h = out or (frame.width, frame.height)
        return Screenshot(data=data, format=format, width=w, height=h, scaling=scaling)

    async def act(self, action: a.Action, scaling: Scaling | None = None) -> a.ActionResult:
        """Carry out one action; failures the model should read come back as a result."""
        if isinstance(action, a.Shell):
            t0 = time.monotonic()
            res = await self.run(
                action.command, timeout=action.timeout_s, cwd=action.cwd, user=action.user
            )
            return a.ActionResult(
                ok=res.ok,
                error=None if res.ok else _describe_failure(res),
                command=res,
                duration_ms=(time.monotonic() - t0) * 1000,
            )
        if isinstance(action, a.Wait):
            await asyncio.sleep(action.duration_s)  # waiting is the action itself
            return a.ActionResult(ok=True, duration_ms=action.duration_s * 1000)
        if isinstance(action, a.HoldKey):
            return await self._hold_key(action)
        if isinstance(action, a.Zoom):
            return await self._zoom(action)
        result: a.ActionResult = await self._on_x(X11Session.perform, action, scaling)
        return result

    async def _zoom(self, action: a.Zoom) -> a.ActionResult:
        """A region of the screen magnified, as a PNG in the result; the screen is untouched."""
        t0 = time.monotonic()
        frame = await self.grab()
        box = (action.x0, action.y0, action.x1, action.y1)
        if min(box) < 0 or action.x1 > frame.width or action.y1 > frame.height:
            return a.ActionResult.failure(
                f"the zoom region {list(box)} is not within the {frame.width}x{frame.height} screen"
            )
        size = (action.width, action.height)
        data = await asyncio.to_thread(encode, frame, "png", size=size, box=box)
        return a.ActionResult(ok=True, image=data, duration_ms=(time.monotonic() - t0) * 1000)

    async def _hold_key(self, action: a.HoldKey) -> a.ActionResult:
        """Press, hold, release: the hold is awaited off the X thread, so screenshots and
        the live view go on meanwhile. A cancellation cuts the hold short but neither the
        press nor the release (shielded): the keys are released whatever happens."""
        t0 = time.monotonic()
        press = asyncio.ensure_future(self._on_x(X11Session.press, action.key))
        try:
            pressed, _ = await asyncio.shield(press)
            if pressed.ok:
                await asyncio.sleep(action.duration_s)  # holding the key is the action
        finally:
            released = await asyncio.shield(asyncio.ensure_future(self._release(press)))
        result = released if pressed.ok and released is not None else pressed
        return result.model_copy(update={"duration_ms": (time.monotonic() - t0) * 1000})

    async def _release(
        self, press: asyncio.Future[tuple[a.ActionResult, tuple[int, ...]]]
    ) -> a.ActionResult | None:
        """Release the keys ``press`` left down, once it is done (None: nothing was down)."""
        _, keycodes = await press
        if not keycodes:
            return None
        released: a.ActionResult = await self._on_x(X11Session.release, keycodes)
        return released

    async def wait_until_settled(
        self, *, quiet_s: float = 0.15, timeout_s: float = 3.0, poll_s: float = 0.03
    ) -> bool:
        """Wait until the screen stops changing for ``quiet_s``; False if it never did."""
        deadline = time.monotonic() + timeout_s
        last = zlib.crc32((await self.grab()).bgra)
        stable_since = time.monotonic()
        while True:
            now = time.monotonic()
            if now - stable_since >= quiet_s:
                return True
            if now >= deadline:
                return False
            await asyncio.sleep(poll_s)
            crc = zlib.crc32((await self.grab()).bgra)
            if crc != last:
                last, stable_since = crc, time.monotonic()

    # ------------------------------------------------------------------ shell and files

    async def _shell_session(self) -> ShellSession:
        self._check_open()
        return await self._shell.session()

    async def connect_shell(self) -> None:
        """Wait until the SSH session (connected in the background after ready) is up;
        its error if it cannot be. A warm pool's desktops wait for it, so that a hire from
        the pool finds them idle (no key exchange left to do)."""
        await self._shell_session()

    async def run(
        self,
        cmd: str,
        *,
        timeout: float = 60.0,  # noqa: ASYNC109 - the command's own limit, enforced remotely
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        user: Literal["agent", "root"] = "agent",
    ) -> a.CommandResult:
        """Run a shell command on the desktop; a timeout kills it and keeps partial output."""
        try:
            return await (await self._shell_session()).run(
                cmd, timeout=timeout, cwd=cwd, env=env, user=user
            )
        except _SHELL_FAILURES as e:
            await self._raise_if_gone(e)
            raise

    async def upload(
        self, local: Path | str, remote: str, *, user: Literal["agent", "root"] = "agent"
    ) -> None:
        """Copy a local file or directory onto the desktop (owned by ``user``)."""
        try:
            await (await self._shell_session()).upload(Path(local), remote, user=user)
        except _SHELL_FAILURES as e:
            await self._raise_if_gone(e)
            raise

    async def download(
        self,
        remote: str,
        local: Path | str,
        *,
        user: Literal["agent", "root"] = "agent",
        max_bytes: int | None = None,
    ) -> None:
        """Copy a file or directory from the desktop to ``local`` (read as ``user``); with
        ``max_bytes``, ``OSError`` (EFBIG) as soon as more would come, nothing written."""
        try:
            await (await self._shell_session()).download(
                remote, Path(local), user=user, max_bytes=max_bytes
            )
        except _SHELL_FAILURES as e:
            await self._raise_if_gone(e)
            raise

    # ------------------------------------------------------------------ live view

    async def live_view(self) -> LiveView:
        """A noVNC link on 127.0.0.1 for watching the desktop; the link holds its password.
        ``DesktopError`` when ``ORCHESTRATOR_LIVE_VIEW_PROXY`` is off (use the API's relay)."""
        self._check_open()
        if self.container_id is None:
            raise DesktopError(f"desktop {self.id} is not started")
        if not settings().live_view_proxy:
            raise DesktopError(LIVE_VIEW_OFF)
        if self._live is None:
            self._live = LiveViewProxy(
                functools.partial(
                    _hostfs.connect_socket, self.sockdir.run / "novnc.sock", self.container_id
                )
            )
            await self._live.start()
        return LiveView(url=self._live.url(self._vnc_password), password=self._vnc_password)

    def open_novnc(self) -> tuple[socket.socket, str]:
        """The noVNC socket (its listener checked) and the VNC password; blocking."""
        self._check_open()
        path, cid = self.sockdir.run / "novnc.sock", self.container_id or "not started"
        return _hostfs.connect_socket(path, cid), self._vnc_password

    # ------------------------------------------------------------------ helpers

    def _check_open(self) -> None:
        if self._closed:
            raise DesktopError(f"desktop {self.id} was stopped")

    async def _raise_if_gone(self, cause: Exception) -> None:
        if self.container_id is not None and not await self.is_alive():
            raise DesktopGoneError(
                f"desktop {self.id} (container {self.container_id[:12]}) is no longer running"
            ) from cause

    def __repr__(self) -> str:
        size = f"{self.spec.width}x{self.spec.height}"
        return f"<Desktop {self.id} {size} display={self.display_number}>"


def _describe_failure(res: a.CommandResult) -> str:
    if res.timed_out:
        return f"command timed out after {res.duration_s:.1f} s and was killed"
    tail = (res.stderr or res.stdout).strip()[-500:]
    return f"command exited with status {res.exit_code}" + (f": {tail}" if tail else "")
