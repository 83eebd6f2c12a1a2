"""ShellLink: the desktop's SSH session connected in the background (one dial shared by the
callers that wait, a failure raised to them and the next call dialling anew, close stopping
a dial). The dial itself is replaced: the real one (asyncssh to a desktop) is covered by the
integration tests of shells and host paths."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from orchestrator.desktop._shell_link import ShellLink
from orchestrator.errors import ShellError


class Session:
    def __init__(self, n: int) -> None:
        self.n = n
        self.closed = False

    async def close(self) -> None:
        self.closed = True


class Dialer:
    """Dials on demand: each dial waits for ``release`` and then fails or succeeds."""

    def __init__(self) -> None:
        self.dials = 0
        self.release = asyncio.Event()
        self.fail_next = False

    async def __call__(self) -> Any:
        self.dials += 1
        n = self.dials
        await self.release.wait()
        if self.fail_next:
            self.fail_next = False
            raise ShellError("ssh.sock refused")
        return Session(n)


def link(dialer: Dialer) -> ShellLink:
    shell = ShellLink("d1", Path("/nonexistent"), key=lambda: None)  # type: ignore[arg-type,return-value]
    shell._dial = dialer  # type: ignore[method-assign]
    return shell


async def test_callers_share_one_background_dial() -> None:
    dialer = Dialer()
    shell = link(dialer)
    await shell.connect(timeout_s=5)
    waiting = [asyncio.create_task(shell.session()) for _ in range(3)]
    await asyncio.sleep(0)
    dialer.release.set()
    got = await asyncio.wait_for(asyncio.gather(*waiting), 5)
    assert dialer.dials == 1 and got[0] is got[1] is got[2]
    assert await shell.session() is got[0]  # kept


async def test_a_failed_dial_is_raised_and_the_next_call_dials_anew() -> None:
    dialer = Dialer()
    dialer.fail_next = True
    dialer.release.set()
    shell = link(dialer)
    await shell.connect(timeout_s=5)
    with pytest.raises(ShellError, match="refused"):
        await asyncio.wait_for(shell.session(), 5)
    session = await asyncio.wait_for(shell.session(), 5)
    assert dialer.dials == 2 and session.n == 2  # type: ignore[attr-defined]


async def test_close_stops_a_dial_and_its_waiters_hear_it() -> None:
    dialer = Dialer()
    shell = link(dialer)
    await shell.connect(timeout_s=5)
    waiter = asyncio.create_task(shell.session())
    await asyncio.sleep(0)
    await shell.close()
    with pytest.raises(ShellError, match="disconnected"):
        await asyncio.wait_for(waiter, 5)


async def test_close_closes_the_session_and_a_reconnect_dials_again() -> None:
    dialer = Dialer()
    dialer.release.set()
    shell = link(dialer)
    await shell.connect(timeout_s=5)
    first = await asyncio.wait_for(shell.session(), 5)
    await shell.connect(timeout_s=5)  # a restart: the old session is closed first
    assert first.closed  # type: ignore[attr-defined]
    second = await asyncio.wait_for(shell.session(), 5)
    assert second is not first and dialer.dials == 2


async def test_a_dial_nobody_waited_for_is_closed_with_the_link() -> None:
    dialer = Dialer()
    dialer.release.set()
    shell = link(dialer)
    await shell.connect(timeout_s=5)
    connecting = shell._connect
    assert connecting is not None
    session = await asyncio.wait_for(asyncio.shield(connecting), 5)
    await shell.close()
    assert session.closed  # type: ignore[attr-defined]
