"""Desktop start slots (``orchestrator.desktop._admission``): shared between processes
through flock'd files, released by the kernel when a holder dies."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.config import settings
from orchestrator.desktop._admission import start_slot, start_slots

HOLDER = """
import asyncio, sys
from orchestrator.desktop._admission import start_slot

async def main() -> None:
    async with start_slot() as slot:
        print(f"held {slot}", flush=True)
        await asyncio.Event().wait()  # hold it until killed

asyncio.run(main())
"""


@pytest.fixture
def slots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """One start slot per node, under a runtime directory of this test's own."""
    monkeypatch.setenv("ORCHESTRATOR_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setenv("ORCHESTRATOR_DESKTOP_START_SLOTS", "1")
    settings.cache_clear()
    yield tmp_path
    settings.cache_clear()


async def test_a_slot_held_by_a_process_that_dies_is_released(slots: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    try:
        assert holder.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(holder.stdout.readline), timeout=30)
        assert line.strip() == "held 0", line

        queued = asyncio.Event()

        async def on_queued() -> None:
            queued.set()

        async def take() -> int | None:
            async with start_slot(on_queued) as slot:
                return slot

        waiter = asyncio.create_task(take())
        await asyncio.wait_for(queued.wait(), timeout=5)  # the other process holds the slot
        assert not waiter.done()
        t0 = time.monotonic()
        holder.send_signal(signal.SIGKILL)  # dies holding it: no clean-up of its own
        assert await asyncio.wait_for(waiter, timeout=5) == 0
        assert time.monotonic() - t0 < 2
    finally:
        holder.kill()
        holder.wait()


async def test_starts_beyond_the_slots_queue_and_take_freed_ones(
    slots: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_DESKTOP_START_SLOTS", "2")
    settings.cache_clear()
    assert start_slots() == 2
    release = asyncio.Event()
    held: list[int | None] = []
    queued: list[int] = []

    async def start(k: int) -> None:
        async def on_queued() -> None:
            queued.append(k)

        async with start_slot(on_queued) as slot:
            held.append(slot)
            await release.wait()

    tasks = [asyncio.create_task(start(k)) for k in range(3)]
    deadline = time.monotonic() + 5
    while len(held) < 2 or not queued:
        assert time.monotonic() < deadline, (held, queued)
        await asyncio.sleep(0.01)
    assert sorted(held) == [0, 1]  # one start per slot, in one process too
    assert len(queued) == 1
    release.set()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)
    assert len(held) == 3


async def test_no_limit_when_set_to_zero(slots: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_DESKTOP_START_SLOTS", "0")
    settings.cache_clear()
    async with start_slot() as a, start_slot() as b:
        assert a is None and b is None
    assert not (slots / "start-slots").exists()
