"""Fixtures on the real thing: one desktop image and one shared desktop per session."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import pytest

from orchestrator import Desktop, DesktopSpec
from orchestrator._docker import client
from orchestrator.errors import DockerError
from orchestrator.image import default_image

T = TypeVar("T")


@pytest.fixture(scope="session")
def desktop_image() -> str:
    """The desktop image tag; fails (not skips) when it is missing: setup builds it."""
    tag = default_image()
    try:
        client().images.get(tag)
    except Exception as e:  # noqa: BLE001
        raise DockerError(f"desktop image {tag} missing: run scripts/setup.sh ({e})") from e
    return tag


@pytest.fixture(scope="session")
async def desktop(desktop_image: str) -> AsyncIterator[Desktop]:
    """One desktop shared by the tests that only act on it (they clean up after themselves)."""
    desk = await Desktop.start(DesktopSpec(image=desktop_image))
    try:
        yield desk
    finally:
        await desk.stop()


async def eventually(
    probe: Callable[[], Awaitable[T]],
    *,
    timeout_s: float = 10.0,
    interval_s: float = 0.05,
    what: str = "condition",
) -> T:
    """Await ``probe()`` until it returns something truthy, or fail with its last value."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while True:
        try:
            last = await probe()
            if last:
                return last  # type: ignore[return-value]
        except AssertionError as e:
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not met within {timeout_s} s; last: {last!r}")
        await asyncio.sleep(interval_s)


# The agent tests' fixtures (a session-wide local Ray cluster, an AgentKit per test).
from tests.integration.conftest_ray import agents, ray_session  # noqa: E402,F401
