"""A desktop's SSH session, connected in the background once the desktop is ready.

Starting a desktop is short of CPU (the container's own start, and for a hire the new
agent's process), and an SSH key exchange, like importing asyncssh, is CPU: so ``Desktop``
connects the X display before it reports ready, and the SSH session from then on, in a task
of its own; the first command or file transfer waits for it. A failed connection is raised
to the callers that waited for it, and the next call connects anew.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ShellError

if TYPE_CHECKING:
    from ._asyncssh import asyncssh
    from ._ssh import ShellSession

__all__ = ["ShellLink"]

log = logging.getLogger(__name__)


class ShellLink:
    """The SSH session of desktop ``desktop_id``: ``connect`` starts connecting, ``session``
    waits for it, ``close`` closes it (or stops connecting).

    ``key`` gives the client key; it is called on a worker thread (with asyncssh's import).
    """

    def __init__(self, desktop_id: str, run_dir: Path, key: Callable[[], asyncssh.SSHKey]) -> None:
        self.desktop_id = desktop_id
        self.run_dir = run_dir
        self._key = key
        self._shell: ShellSession | None = None
        self._connect: asyncio.Task[ShellSession] | None = None
        self._timeout_s = 30.0

    async def connect(self, timeout_s: float) -> None:
        """Start connecting in the background (the previous session closed first)."""
        await self.close()
        self._timeout_s = timeout_s
        self._connect = self._start()

    def _start(self) -> asyncio.Task[ShellSession]:
        task = asyncio.create_task(self._dial(), name=f"ssh-{self.desktop_id}")
        task.add_done_callback(_log_failure)
        return task

    async def _dial(self) -> ShellSession:
        def load() -> tuple[type[ShellSession], asyncssh.SSHKey]:  # imports off the loop
            module = importlib.import_module("._ssh", __package__)
            return module.ShellSession, self._key()

        session_type, key = await asyncio.to_thread(load)
        run = self.run_dir
        return await session_type.connect(
            run / "ssh.sock", key, run / "ssh_host_key.pub", timeout=self._timeout_s
        )

    async def session(self) -> ShellSession:
        """The connected session: the one connecting, or a new one if that failed."""
        if self._shell is not None:
            return self._shell
        connect = self._connect
        if connect is None:
            connect = self._connect = self._start()
        try:
            shell = await asyncio.shield(connect)
        except asyncio.CancelledError:
            if connect.cancelled():  # closed meanwhile (a stop or a restart)
                raise ShellError(f"desktop {self.desktop_id} was disconnected") from None
            raise
        except BaseException:
            if self._connect is connect:
                self._connect = None  # the next call connects anew
            raise
        if self._shell is shell:  # another caller waited for the same connection
            return shell
        if self._connect is not connect:  # closed meanwhile (that closed this one too)
            raise ShellError(f"desktop {self.desktop_id} was disconnected")
        self._shell, self._connect = shell, None
        return shell

    async def close(self) -> None:
        """Close the session, or stop connecting it."""
        connect, self._connect = self._connect, None
        if connect is not None:
            connect.cancel()
            [got] = await asyncio.gather(connect, return_exceptions=True)
            if not isinstance(got, BaseException) and got is not self._shell:
                await got.close()
        if (shell := self._shell) is not None:
            self._shell = None
            await shell.close()


def _log_failure(task: asyncio.Task[ShellSession]) -> None:
    """Retrieve a background connection's failure (the next shell call connects anew)."""
    if not task.cancelled() and (e := task.exception()) is not None:
        log.info("SSH connection to a desktop failed (the next command retries): %s", e)
