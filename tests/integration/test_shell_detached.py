"""Processes that detach from a shell command (setsid, nohup, a daemon's double fork) die at
its timeout or cancellation like any other child, and a command that ends by itself leaves
the daemons it started alone (``service nginx start`` in a workflow step keeps working).

The command runs under the image's ``run-command``, a child subreaper: whatever detaches is
reparented to it, not to PID 1. Before it, coreutils ``timeout`` killed the command's process
group only, and a process in a session of its own ran on. Each test tags its processes with
a unique ``sleep`` argument and looks for them inside the container afterwards.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable

import pytest

from orchestrator import Desktop
from orchestrator.desktop._shell_programs import KILL_AFTER_S, User
from tests.integration.conftest import eventually
from tests.integration.test_shell import count_processes, kill_processes, processes_gone

pytestmark = pytest.mark.integration

# fork, setsid, fork again, exec: how a classic daemon (nginx, sshd) leaves its starter
_DAEMONIZE = (
    "python3 -c 'import os, sys; os.fork() and os._exit(0); os.setsid(); "
    'os.fork() and os._exit(0); os.execvp("sleep", ["sleep", sys.argv[1]])\' {n} '
    ">/dev/null 2>&1 </dev/null"
)

DETACHING: dict[str, Callable[[str], str]] = {
    "setsid": lambda n: f"setsid sleep {n} &",
    "setsid --fork": lambda n: f"setsid --fork sleep {n} >/dev/null 2>&1",
    "nohup": lambda n: f"nohup sleep {n} >/dev/null 2>&1 &",
    "double fork": lambda n: _DAEMONIZE.format(n=n),
    "start-stop-daemon": lambda n: (
        f"/usr/sbin/start-stop-daemon --start --background --exec /usr/bin/sleep -- {n}"
    ),
}


async def sleeping(desk: Desktop, n: str) -> int:
    """How many ``sleep n`` processes run on the desktop (started by name or by path)."""
    return await count_processes(desk, f"sleep {n}") + await count_processes(
        desk, f"/usr/bin/sleep {n}"
    )


async def kill_sleeping(desk: Desktop, n: str) -> None:
    await kill_processes(desk, f"sleep {n}")
    await kill_processes(desk, f"/usr/bin/sleep {n}")


# Until the detached process runs: "started" on stdout says it did (no vacuous pass).
_WAIT_FOR = "until pgrep -f '^(/usr/bin/)?sleep {n}$' >/dev/null; do sleep 0.02; done"


def _unique() -> str:
    """A sleep argument no other process on the shared desktop has (about 3 days)."""
    return str(200_000 + secrets.randbelow(100_000))


@pytest.mark.parametrize("user", ["agent", "root"])
@pytest.mark.parametrize("how", list(DETACHING))
async def test_a_detached_process_dies_at_the_timeout(
    desktop: Desktop, how: str, user: User
) -> None:
    n = _unique()
    try:
        res = await desktop.run(
            f"{DETACHING[how](n)}\n{_WAIT_FOR.format(n=n)}; echo started; sleep 300",
            timeout=2,
            user=user,
        )
        assert res.timed_out and res.exit_code is None, res
        assert res.stdout == "started\n", res  # the partial output is kept
        assert 2 <= res.duration_s < 2 + KILL_AFTER_S + 1, res
        # run-command exits only once every process below it is gone: no wait needed
        assert await sleeping(desktop, n) == 0, f"{how}: sleep {n} survived"
    finally:
        await kill_sleeping(desktop, n)


async def test_a_detached_process_that_ignores_term_is_killed(desktop: Desktop) -> None:
    n = _unique()
    try:
        res = await desktop.run(
            f"setsid sh -c 'trap \"\" TERM; sleep {n}' &\n{_WAIT_FOR.format(n=n)}; echo started"
            "; sleep 300",
            timeout=1,
        )
        assert res.timed_out and res.stdout == "started\n", res
        assert 1 + KILL_AFTER_S <= res.duration_s < 1 + KILL_AFTER_S + 1.5, res
        assert await sleeping(desktop, n) == 0
        assert await count_processes(desktop, "sh -c trap") == 0
    finally:
        await kill_sleeping(desktop, n)


async def test_a_cancelled_command_takes_its_detached_processes_along(desktop: Desktop) -> None:
    n = _unique()
    task = asyncio.create_task(desktop.run(f"setsid sleep {n} & sleep 300", timeout=60))
    try:

        async def running() -> bool:
            return await sleeping(desktop, n) == 1

        await eventually(running, what="the detached sleep running")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await processes_gone(desktop, f"sleep {n}", "the detached sleep killed on cancellation")
    finally:
        await kill_sleeping(desktop, n)


DAEMONS: dict[str, Callable[[str], str]] = {
    "setsid": lambda n: f"setsid sleep {n} >/dev/null 2>&1 </dev/null &",
    "double fork": DETACHING["double fork"],
    "start-stop-daemon": DETACHING["start-stop-daemon"],  # what `service x start` runs
}


@pytest.mark.parametrize("how", list(DAEMONS))
async def test_a_command_that_ends_by_itself_leaves_its_daemons_running(
    desktop: Desktop, how: str
) -> None:
    n = _unique()
    try:
        res = await desktop.run(f"{DAEMONS[how](n)}\necho ok", timeout=10, user="root")
        assert res.exit_code == 0 and res.stdout == "ok\n" and res.duration_s < 3, res
        assert await sleeping(desktop, n) == 1
        # and it stays: nothing comes for it later (the supervisor exited with the command)
        later = await desktop.run("sleep 0.5; true", timeout=10)
        assert later.ok and await sleeping(desktop, n) == 1
    finally:
        await kill_sleeping(desktop, n)


async def test_exit_statuses_and_signals_still_come_through(desktop: Desktop) -> None:
    assert (await desktop.run("exit 7")).exit_code == 7
    assert (await desktop.run("no-such-command-here")).exit_code == 127
    killed = await desktop.run("kill -KILL $$", timeout=10)
    assert killed.exit_code is None and not killed.timed_out, killed
