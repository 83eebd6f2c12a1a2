"""``Desktop.screenshot(size=...)`` on a grabbed frame (the X grab replaced by a fixed frame;
encoding, the size check and the result are the real code): a brain's size comes back
without a ``Scaling`` (the brain maps its points itself), and a huge size is refused."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator.desktop import Desktop, Scaling
from orchestrator.desktop._screen import Frame
from orchestrator.desktop._spec import DesktopSpec
from orchestrator.errors import ConfigError


class _Grabbed(Desktop):
    """A ``Desktop`` whose grab returns a fixed frame (no container, no X server)."""

    def __init__(self, width: int, height: int) -> None:  # no container: nothing to start
        self.spec = DesktopSpec(width=width, height=height)
        self.grabs = 0

    async def grab(self) -> Frame:
        self.grabs += 1
        w, h = self.size
        return Frame(w, h, bytes(w * h * 4), 0.0)


def test_a_size_comes_back_without_scaling() -> None:
    desk = _Grabbed(1280, 800)
    shot = asyncio.run(desk.screenshot("jpeg", size=(1288, 812)))
    assert (shot.width, shot.height, shot.scaling) == (1288, 812, None)
    scaling = Scaling(1280, 800, 1024, 640)
    shot = asyncio.run(desk.screenshot("png", scaling=scaling))
    assert (shot.width, shot.height, shot.scaling) == (1024, 640, scaling)


@pytest.mark.parametrize("size", [(16384, 16384), (2561, 800), (1280, 1601)])
def test_a_huge_size_is_refused_before_the_grab(size: tuple[int, int]) -> None:
    desk = _Grabbed(1280, 800)
    with pytest.raises(ConfigError, match="screenshot of the 1280x800 screen is refused"):
        asyncio.run(desk.screenshot("jpeg", size=size))
    assert desk.grabs == 0
