"""``desktop_image/run-command``, the supervisor every desktop shell command runs under, run
on this machine (the same kernel as the containers'): statuses come through, a timeout
takes every process of the tree along (detached ones too: it is a child subreaper), a
command that ends by itself leaves its daemons alone. The integration tests
(``test_shell_detached``) do the same through SSH on a real desktop."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.desktop._shell_programs import KILL_AFTER_S, RUN_COMMAND, build_command

SCRIPT = Path(__file__).resolve().parents[2] / "desktop_image" / "run-command"

pytestmark = pytest.mark.skipif(shutil.which("perl") is None, reason="needs perl")


def run(limit: float, script: str, grace: float = 1.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["perl", str(SCRIPT), f"{limit:g}", f"{grace:g}", "bash", "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
    )


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


@pytest.fixture
def pids() -> Iterator[list[int]]:
    """Processes a test started: killed at the end, whatever happened."""
    started: list[int] = []
    yield started
    for pid in started:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_it_compiles_under_strict_and_warnings() -> None:
    done = subprocess.run(
        ["perl", "-Mstrict", "-Mwarnings", "-c", str(SCRIPT)], capture_output=True, text=True
    )
    assert done.returncode == 0 and "syntax OK" in done.stderr, done.stderr


def test_every_command_runs_under_it() -> None:
    as_root, _ = build_command("echo hi", timeout=5, user="root")
    assert f"exec {RUN_COMMAND} 5.000 {KILL_AFTER_S:g} bash -lc" in as_root
    as_agent, _ = build_command("echo hi", timeout=5)  # the session's variables as arguments
    assert f'{RUN_COMMAND} 5.000 {KILL_AFTER_S:g} ${{DISPLAY+"DISPLAY=$DISPLAY"}}' in as_agent
    assert " env " not in as_agent and "timeout" not in as_agent.replace("5.000", "")


def test_it_sets_the_variables_given_before_the_command() -> None:
    done = subprocess.run(
        [
            "perl",
            str(SCRIPT),
            "5",
            "1",
            "FOO=bar",
            "X=a b\nc",
            "A=",
            "bash",
            "-c",
            'echo "$FOO|$X|${A-unset}"',
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and done.stdout == "bar|a b\nc|\n", done


def test_statuses_come_through() -> None:
    assert run(5, "exit 3").returncode == 3
    assert run(5, "echo out; echo err >&2").stdout == "out\n"
    assert run(5, "kill -TERM $$").returncode == -signal.SIGTERM  # raised again
    assert run(5, "kill -SEGV $$").returncode == 128 + signal.SIGSEGV  # no core dump
    missing = subprocess.run(["perl", str(SCRIPT), "5", "1", "/no/such/program"])
    assert missing.returncode == 127
    assert subprocess.run(["perl", str(SCRIPT), "x", "1", "true"]).returncode == 125


def test_a_timeout_kills_the_processes_that_detached(pids: list[int]) -> None:
    t0 = time.monotonic()
    done = run(
        1,
        "setsid sleep 301 & echo $!; nohup sleep 302 >/dev/null 2>&1 & echo $!; "
        "(setsid sleep 303 & echo $!) ; sleep 100",
    )
    took = time.monotonic() - t0
    pids.extend(int(p) for p in done.stdout.split())
    assert done.returncode == 124, done
    assert len(pids) == 3 and 1 <= took < 1 + 1.0, took
    assert not any(alive(p) for p in pids), [p for p in pids if alive(p)]


def test_what_ignores_term_gets_kill_after_the_grace(pids: list[int]) -> None:
    t0 = time.monotonic()
    done = run(0.5, "setsid sh -c 'trap \"\" TERM; sleep 304' & echo $!; sleep 100", grace=0.5)
    pids.extend(int(p) for p in done.stdout.split())
    assert done.returncode == 128 + signal.SIGKILL, done
    assert 1.0 <= time.monotonic() - t0 < 2.5
    assert not any(alive(p) for p in pids)


def test_a_command_that_ends_by_itself_leaves_its_daemon_running(pids: list[int]) -> None:
    done = run(5, "setsid sleep 305 >/dev/null 2>&1 </dev/null & echo $!")
    pids.extend(int(p) for p in done.stdout.split())
    assert done.returncode == 0 and len(pids) == 1, done
    assert alive(pids[0])


def test_term_to_it_kills_the_tree_as_a_timeout_does(pids: list[int]) -> None:
    proc = subprocess.Popen(
        ["perl", str(SCRIPT), "60", "1", "bash", "-c", "setsid sleep 306 & echo $!; sleep 100"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    pids.append(int(proc.stdout.readline()))
    proc.send_signal(signal.SIGTERM)  # what a cancelled run sends
    assert proc.wait(timeout=10) == 124
    assert not alive(pids[0])
