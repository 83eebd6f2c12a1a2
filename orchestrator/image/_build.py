"""``docker build`` of desktop_image/ on the engine, with readable progress."""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests.exceptions

from .._docker import client, translate_errors
from ..errors import ImageBuildError

__all__ = ["BuildLog", "run_build"]

Progress = Callable[[str], None]

BUILD_READ_TIMEOUT_S = 1800.0
"""Longest a build step may stay silent (one RUN that prints nothing) before we give up."""

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_APT_TOTAL = re.compile(r"^\d+ upgraded, (\d+) newly installed")
_APT_COUNTED = (("Unpacking ", "unpacked"), ("Setting up ", "set up"))


class BuildLog:
    """Turns the engine's build output into a few progress lines, and keeps the current
    step's last lines for an error message.

    Every ``Step n/m`` line is shown; apt's per-package lines are counted and shown at
    most every ``interval_s`` (``apt: unpacked 120/394, set up 80/394``), and once more
    when the step ends.
    """

    def __init__(
        self,
        progress: Progress,
        *,
        interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        tail_lines: int = 40,
    ) -> None:
        self._progress = progress
        self._interval_s = interval_s
        self._clock = clock
        self._partial = ""
        self.step = "(before the first step)"
        self.tail: deque[str] = deque(maxlen=tail_lines)
        self._counts: dict[str, int] = {}
        self._shown: dict[str, int] = {}
        self._total: int | None = None
        self._last_emit = clock()

    def feed(self, text: str) -> None:
        """Take a chunk of output (any number of lines, possibly partial)."""
        lines = (self._partial + text.replace("\r", "\n")).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self.line(line)

    def flush(self) -> None:
        """End of output: the last partial line, and apt's final counts."""
        if self._partial:
            self.line(self._partial)
            self._partial = ""
        self._apt_summary()

    def line(self, raw: str) -> None:
        line = _ANSI.sub("", raw).rstrip()
        if not line.strip():
            return
        m = _STEP.match(line)
        if m:
            self._apt_summary()
            self.step = f"{m.group(1)}/{m.group(2)}"
            self.tail.clear()
            self._counts, self._shown, self._total = {}, {}, None
            self._last_emit = self._clock()
            text = m.group(3)
            self._progress(f"step {self.step}: {text[:110]}{'...' if len(text) > 110 else ''}")
            return
        stripped = line.strip()
        if stripped == "---> Using cache":
            self._progress("  (cached)")
            return
        if stripped.startswith(("--->", "Removing intermediate container")):
            return
        self.tail.append(line)
        if stripped.startswith("Successfully tagged "):
            self._progress(stripped)
            return
        m = _APT_TOTAL.match(stripped)
        if m:
            self._total = int(m.group(1))
            self._progress(f"  apt: installing {self._total} packages")
            return
        if stripped.startswith(("Need to get ", "Fetched ")):
            self._progress(f"  apt: {stripped}")
            return
        if stripped.startswith(("E: ", "Err:")):
            self._progress(f"  {stripped}")
            return
        for prefix, done in _APT_COUNTED:
            if stripped.startswith(prefix):
                self._counts[done] = self._counts.get(done, 0) + 1
                if self._clock() - self._last_emit >= self._interval_s:
                    self._apt_summary()
                return

    def _apt_summary(self) -> None:
        if not self._counts or self._counts == self._shown:
            return
        of = f"/{self._total}" if self._total else ""
        parts = [
            f"{done} {self._counts[done]}{of}" for _, done in _APT_COUNTED if done in self._counts
        ]
        self._progress(f"  apt: {', '.join(parts)}")
        self._shown = dict(self._counts)
        self._last_emit = self._clock()


def run_build(
    directory: Path,
    tag: str,
    *,
    base: str,
    progress: Progress,
    nocache: bool = False,
    labels: dict[str, str] | None = None,
) -> None:
    """Build ``directory`` (its Dockerfile) as ``tag`` on ``base``, host network."""
    log = BuildLog(progress)
    what = f"building {tag}"
    with translate_errors(what):
        stream = client().api.build(
            path=str(directory),
            tag=tag,
            buildargs={"BASE_IMAGE": base},
            network_mode="host",
            rm=True,
            forcerm=True,
            pull=False,
            nocache=nocache,
            decode=True,
            labels=labels or {},
            timeout=BUILD_READ_TIMEOUT_S,
        )
        try:
            for item in stream:
                _handle(item, log, tag)
        except requests.exceptions.ReadTimeout as e:
            raise ImageBuildError(
                f"{what}: step {log.step} printed nothing for {BUILD_READ_TIMEOUT_S:.0f} s\n"
                + "\n".join(log.tail)
            ) from e
    log.flush()


def _handle(item: dict[str, Any], log: BuildLog, tag: str) -> None:
    if "stream" in item:
        log.feed(str(item["stream"]))
    elif "error" in item:
        log.flush()
        detail = item.get("errorDetail") or {}
        message = str(detail.get("message") or item["error"]).strip()
        tail = "\n".join(log.tail)
        raise ImageBuildError(
            f"building {tag} failed at step {log.step}: {message}\n--- last output ---\n{tail}"
        )
    elif "status" in item:  # e.g. the engine pulling a base it does not have
        log.line(str(item["status"]))
