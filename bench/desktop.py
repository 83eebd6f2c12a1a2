"""Benchmark: our desktop path against the naive path, in one run on this machine.

Ours: X socket shared through a bind mount (mss grabs, XTest input), one persistent SSH
connection over a unix socket, SFTP. Naive (as the OpenAI sample app and the Anthropic demo
do): ``docker exec`` with xdotool for input, ImageMagick ``import`` for screenshots,
``docker exec`` for commands and ``docker cp`` for files.

    python bench/desktop.py [--json PATH] [--samples N] [--starts N] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from orchestrator import Desktop, DesktopSpec, actions
from orchestrator._docker import client
from orchestrator.image import default_image

TEXT_50 = "the quick brown fox jumps over the lazy dog 0123456"[:50]


def pct(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def timed(fn: Callable[[], Awaitable[Any]], n: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        await fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def sh(*args: str, input: bytes | None = None) -> bytes:
    return subprocess.run(args, check=True, capture_output=True, input=input).stdout


async def sh_async(*args: str) -> bytes:
    return await asyncio.to_thread(sh, *args)


def dexec(cid: str, cmd: str, user: str = "agent") -> list[str]:
    return ["docker", "exec", "-u", user, "-e", "DISPLAY=:0", cid, "bash", "-c", cmd]


async def naive_start(image: str) -> float:
    """docker run + poll with docker exec until the X display answers."""
    t0 = time.perf_counter()
    cid = sh("docker", "run", "-d", "--rm", image).decode().strip()
    try:
        while True:
            r = await asyncio.to_thread(
                subprocess.run, dexec(cid, "xdpyinfo >/dev/null 2>&1"), capture_output=True
            )
            if r.returncode == 0:
                return (time.perf_counter() - t0) * 1000
    finally:
        sh("docker", "rm", "-f", cid)


def idle_memory_mb(container_id: str) -> float:
    stats = client().containers.get(container_id).stats(stream=False)
    mem = stats["memory_stats"]
    usage = mem["usage"]
    st = mem.get("stats", {})
    cache = st.get("total_inactive_file", st.get("inactive_file", st.get("cache", 0)))
    return float(usage - cache) / 2**20


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", type=Path, help="write the metrics here")
    ap.add_argument("--samples", type=int, default=40)
    ap.add_argument("--starts", type=int, default=5)
    ap.add_argument("--smoke", action="store_true", help="a quick run: checks it works")
    args = ap.parse_args()
    if args.smoke:
        args.samples, args.starts = 4, 1
    n = args.samples
    image = default_image()
    metrics: dict[str, dict[str, float]] = {}

    def record(name: str, ours: list[float], base: list[float]) -> None:
        metrics[name] = {
            "p50_ms": round(pct(ours, 50), 3),
            "p95_ms": round(pct(ours, 95), 3),
            "baseline_p50_ms": round(pct(base, 50), 3),
        }

    # start_to_ready: ours (hardened, WM + VNC + SSH up, X and SSH connected) vs naive.
    ours_start, base_start = [], []
    for _ in range(args.starts):
        t0 = time.perf_counter()
        d = await Desktop.start(DesktopSpec(image=image))
        ours_start.append((time.perf_counter() - t0) * 1000)
        await d.stop()
        base_start.append(await naive_start(image))
    record("start_to_ready", ours_start, base_start)

    desk = await Desktop.start(DesktopSpec(image=image))
    try:
        cid = desk.container_id
        assert cid is not None
        # An xterm that swallows what is typed, focused, as the typing target.
        await desk.run("xterm -geometry 80x24+0+0 -e cat >/dev/null 2>&1 &", timeout=10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if (await desk.run("xdotool search --onlyvisible --class xterm")).stdout.strip():
                break
            await asyncio.sleep(0.05)
        await desk.act(actions.Click(x=100, y=100))
        await desk.wait_until_settled(timeout_s=5)

        async def grab() -> None:
            await desk.grab()

        record(
            "screenshot_grab",
            await timed(grab, n),
            await timed(lambda: sh_async(*dexec(cid, "import -window root rgb:-")), n // 4),
        )
        record(
            "screenshot_png",
            await timed(lambda: desk.screenshot("png"), n),
            await timed(lambda: sh_async(*dexec(cid, "import -window root png:-")), n // 4),
        )
        record(
            "screenshot_jpeg",
            await timed(lambda: desk.screenshot("jpeg"), n),
            await timed(lambda: sh_async(*dexec(cid, "import -window root jpeg:-")), n // 4),
        )
        record(
            "click",
            await timed(lambda: desk.act(actions.Click(x=100, y=100)), n),
            await timed(lambda: sh_async(*dexec(cid, "xdotool mousemove 100 100 click 1")), n // 4),
        )
        record(
            "type_50_chars",
            await timed(lambda: desk.act(actions.TypeText(text=TEXT_50)), n),
            await timed(
                lambda: sh_async(*dexec(cid, f"xdotool type --delay 12 '{TEXT_50}'")), n // 4
            ),
        )
        record(
            "shell_roundtrip",
            await timed(lambda: desk.run("true"), n),
            await timed(lambda: sh_async(*dexec(cid, "true")), n // 4),
        )
        with tempfile.TemporaryDirectory() as tmp:
            src, back = Path(tmp, "src.bin"), Path(tmp, "back.bin")
            src.write_bytes(os.urandom(2**20))

            async def ours_file() -> None:
                await desk.upload(src, "/tmp/bench.bin")
                await desk.download("/tmp/bench.bin", back)

            async def naive_file() -> None:
                await sh_async("docker", "cp", str(src), f"{cid}:/tmp/naive.bin")
                await sh_async("docker", "cp", f"{cid}:/tmp/naive.bin", str(back))

            record(
                "file_roundtrip_1mb",
                await timed(ours_file, n // 2),
                await timed(naive_file, n // 4),
            )
        await desk.run("pkill -f 'xterm -geometry' || true")
        await desk.wait_until_settled(timeout_s=5)
    finally:
        await desk.stop()

    # Idle memory: a fresh desktop, settled, nothing opened.
    idle = await Desktop.start(DesktopSpec(image=image))
    try:
        await idle.wait_until_settled(timeout_s=5)
        assert idle.container_id is not None
        mem = await asyncio.to_thread(idle_memory_mb, idle.container_id)
    finally:
        await idle.stop()

    out: dict[str, Any] = {"metrics": {**metrics, "idle_memory_mb": {"value": round(mem, 1)}}}
    print(f"{'metric':<20} {'p50 ms':>9} {'p95 ms':>9} {'naive p50':>10} {'speed-up':>9}")
    for name, m in metrics.items():
        ratio = m["baseline_p50_ms"] / m["p50_ms"] if m["p50_ms"] else float("inf")
        print(
            f"{name:<20} {m['p50_ms']:>9.2f} {m['p95_ms']:>9.2f} "
            f"{m['baseline_p50_ms']:>10.2f} {ratio:>8.1f}x"
        )
    print(f"{'idle_memory_mb':<20} {mem:>9.1f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
