"""Benchmark: hiring agents and the per-step runtime overhead, against naive baselines
measured in the same run.

- hire_cold: a parent hires a specialist (new Ray actor + new desktop) until it is ready.
  Baseline: the naive way, one after the other: a plain Ray actor, then `docker run` of the
  same image polled with `docker exec xdpyinfo` until the display answers.
- hire_warm: the same hire taken from a warm pool (actor and desktop already up).
  Baseline: hire_cold in this run.
- fanout_8_cold: 8 specialists hired in parallel, until all are ready.
  Baseline: 8 cold hires one after another.
- step_overhead: one step of the real loop (screenshot, JPEG encode, decide with a scripted
  zero-latency brain, act, record durably, settle), averaged over a task of many steps.
  Baseline: a naive step: `docker exec import` PNG screenshot, `docker exec xdotool` action,
  a JSON line appended and fsynced.
- agent_memory_mb: memory per idle agent (actor process RSS + its desktop container), with
  --agents idle agents up at once (default 20).
- burst_48: 48 specialists hired at once (--burst), until all are ready, p50 of 3 runs
  (--burst-runs); the local cluster declares a unit for each and one for their parent.
  Baseline: the same burst once without admission (ORCHESTRATOR_DESKTOP_START_SLOTS=0, in a
  cluster of its own started afterwards): the time until every hire answered, and how many
  failed (``baseline_failed``; the other metrics' baselines all succeed).

    python bench/hierarchy.py [--json PATH] [--samples N] [--agents N] [--burst N] [--smoke]
                              [--only hire_cold|hire_warm|fanout_8_cold]
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
from pathlib import Path
from typing import Any

import ray

from actors import Runtime, init_ray
from orchestrator._docker import client
from orchestrator.domain import AgentInfo, AgentSpec, TaskSpec, TaskState
from orchestrator.image import default_image


def pct(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


@ray.remote(num_cpus=0)
class Plain:
    def ping(self) -> int:
        return 1


async def naive_hire(image: str) -> float:
    t0 = time.perf_counter()
    actor = Plain.remote()  # type: ignore[attr-defined]
    await actor.ping.remote()
    cid = sh("docker", "run", "-d", "--rm", image).strip()
    try:
        while subprocess.run(
            ["docker", "exec", "-e", "DISPLAY=:0", cid, "xdpyinfo"], capture_output=True
        ).returncode:
            pass
        return (time.perf_counter() - t0) * 1000
    finally:
        sh("docker", "rm", "-f", cid)
        ray.kill(actor)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def container_mb(cid: str) -> float:
    mem = client().containers.get(cid).stats(stream=False)["memory_stats"]
    st = mem.get("stats", {})
    cache = st.get("total_inactive_file", st.get("inactive_file", st.get("cache", 0)))
    return float(mem["usage"] - cache) / 2**20


def _reason(e: BaseException) -> str:
    """The line of a failed hire's error that says why (desktop-init's FAILED line)."""
    lines = str(e).strip().splitlines() or [type(e).__name__]
    return next((ln for ln in lines if "FAILED" in ln or "Error:" in ln), lines[-1])[:300]


async def burst(parent: Any, count: int, tag: str) -> tuple[float, list[str]]:
    """Hire ``count`` specialists at once; (ms until every hire answered, their errors).
    Every one hired is fired and its desktop gone before this returns."""
    t0 = time.perf_counter()
    got = await asyncio.gather(
        *(parent.hire.remote(AgentSpec(name=f"{tag}-{i}", role="burst")) for i in range(count)),
        return_exceptions=True,
    )
    ms = (time.perf_counter() - t0) * 1000
    errors = [_reason(g) for g in got if isinstance(g, BaseException)]
    await asyncio.gather(*(parent.fire.remote(g.id) for g in got if isinstance(g, AgentInfo)))
    path = (await parent.get_info.remote()).path
    deadline = time.monotonic() + 120
    while any(  # each run starts on an empty node: its desktops must all be removed
        c.labels.get("orchestrator.path", "").startswith(path + "/")
        for c in client().containers.list(all=True, filters={"label": "orchestrator.desktop"})
    ):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the desktops of burst {tag} were not removed within 120 s")
        await asyncio.sleep(0.5)
    return ms, errors


async def burst_only(rt: Runtime, count: int, runs: int) -> dict[str, Any]:
    boss = await rt.create_agent("bench", AgentSpec(name=f"burst-{os.getpid()}"))
    parent = await rt.handle(boss.id)
    try:
        results = [await burst(parent, count, f"b{r}") for r in range(runs)]
    finally:
        await rt.fire(boss.id)
    return {
        "ms": [ms for ms, _ in results],
        "failed": [len(errors) for _, errors in results],
        "errors": sorted({e for _, errors in results for e in errors})[:5],
    }


def burst_baseline(count: int) -> dict[str, Any]:
    """The burst once without admission, in a local cluster of its own (this one is down)."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--burst-only",
                "--burst",
                str(count),
                "--burst-runs",
                "1",
                "--json",
                out.name,
            ],
            env={**env, "ORCHESTRATOR_DESKTOP_START_SLOTS": "0"},
            check=True,
        )
        result: dict[str, Any] = json.loads(Path(out.name).read_text())
        return result


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--agents", type=int, default=20)
    ap.add_argument("--burst", type=int, default=48, help="hires at once for burst_48")
    ap.add_argument("--burst-runs", type=int, default=3)
    ap.add_argument("--burst-only", action="store_true", help="only the burst, JSON to --json")
    ap.add_argument(
        "--only",
        choices=["hire_cold", "hire_warm", "fanout_8_cold"],
        help="stop after this metric (the metrics before it are measured too)",
    )
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="a quick run that only checks the benchmark works (its figures mean nothing)",
    )
    args = ap.parse_args()
    width = 8  # the fan-out
    if args.smoke:
        args.samples, args.steps, args.agents, width = 1, 5, 2, 2
    if args.smoke:
        args.burst, args.burst_runs = 2, 1
    image = default_image()
    init_ray(desktops=args.burst + 1)  # a local cluster: one unit per burst hire + the parent
    rt = Runtime.connect(data_dir=Path(tempfile.mkdtemp(prefix="bench-records-")))
    metrics: dict[str, Any] = {}
    if args.burst_only:
        out = await burst_only(rt, args.burst, args.burst_runs)
        if args.json:
            args.json.write_text(json.dumps(out) + "\n")
        return 0

    def record(name: str, ours: list[float], base: list[float]) -> None:
        metrics[name] = {
            "p50_ms": round(pct(ours, 50), 2),
            "p95_ms": round(pct(ours, 95), 2),
            "baseline_p50_ms": round(pct(base, 50), 2),
        }

    boss = await rt.create_agent("bench", AgentSpec(name=f"boss-{os.getpid()}"))
    parent = await rt.handle(boss.id)
    n = 0

    async def hire() -> float:
        nonlocal n
        n += 1
        t0 = time.perf_counter()
        info = await parent.hire.remote(AgentSpec(name=f"s{n}", role="specialist"))
        ms = (time.perf_counter() - t0) * 1000
        await parent.fire.remote(info.id)
        return ms

    cold = [await hire() for _ in range(args.samples)]
    naive = [await naive_hire(image) for _ in range(args.samples)]
    record("hire_cold", cold, naive)
    if args.only == "hire_cold":
        await rt.fire(boss.id)
        return report(metrics, args.json)

    pool = await rt.start_pool(args.samples)
    await pool.wait_full.remote(300)
    warm = []
    for _ in range(args.samples):
        await pool.wait_full.remote(300)  # a warm hire is one the pool can serve: refill first
        warm.append(await hire())
    record("hire_warm", warm, cold)
    await pool.shutdown.remote()
    ray.kill(pool)
    if args.only == "hire_warm":
        await rt.fire(boss.id)
        return report(metrics, args.json)

    async def fanout() -> float:
        nonlocal n
        t0 = time.perf_counter()
        infos = await asyncio.gather(
            *(parent.hire.remote(AgentSpec(name=f"f{n}-{i}", role="x")) for i in range(width))
        )
        ms = (time.perf_counter() - t0) * 1000
        n += 1
        await asyncio.gather(*(parent.fire.remote(i.id) for i in infos))
        return ms

    fan = [await fanout() for _ in range(max(1, args.samples // 2))]
    seq = [sum([await hire() for _ in range(width)])]
    record("fanout_8_cold", fan, seq)
    if args.only:
        await rt.fire(boss.id)
        return report(metrics, args.json)

    # step_overhead: a task of many steps through the real loop, zero-latency brain. The
    # steps query the pointer (an X round trip), so no settle wait follows them: this is
    # the runtime's own cost. step_gui: pointer moves, followed by the adaptive settle wait
    # (the screen must stay unchanged 30 ms), the price of never acting on a stale screen.
    async def step_gaps(steps: list[dict[str, Any]]) -> list[float]:
        spec = TaskSpec(description="steps", step_budget=len(steps) + 1, script={"steps": steps})
        task = await rt.assign(boss.id, spec)
        done = await rt.wait(task.id, 600)
        assert done.state == TaskState.SUCCEEDED, done.error
        evs = [e for e in await rt.events(task_id=task.id, limit=1000) if e.kind.value == "step"]
        return [(b.at - a.at) * 1000 for a, b in zip(evs, evs[1:], strict=False)]

    gaps = await step_gaps([{"type": "cursor_position"}] * args.steps)
    gui_gaps = await step_gaps(
        [{"type": "move", "x": 10 + i % 500, "y": 10 + i % 300} for i in range(args.steps)]
    )
    desk_cid = sh("docker", "ps", "-q", "--filter", f"label=orchestrator.agent={boss.id}").strip()
    naive_steps = []
    with tempfile.NamedTemporaryFile("a") as log:
        for i in range(max(5, args.samples * 2)):
            t0 = time.perf_counter()
            ex = ["docker", "exec", "-u", "agent", "-e", "DISPLAY=:0", desk_cid]
            subprocess.run([*ex, "import", "-window", "root", "png:-"], capture_output=True)
            subprocess.run([*ex, "xdotool", "mousemove", str(10 + i), "10"], capture_output=True)
            log.write(json.dumps({"step": i}) + "\n")
            log.flush()
            os.fsync(log.fileno())
            naive_steps.append((time.perf_counter() - t0) * 1000)
    record("step_overhead", gaps, naive_steps)
    record("step_gui", gui_gaps, naive_steps)

    # agent_memory_mb: many idle agents at once.
    infos = await asyncio.gather(
        *(
            parent.hire.remote(AgentSpec(name=f"idle{i}", role="idle"))
            for i in range(args.agents - 1)
        )
    )
    await asyncio.sleep(0 if args.smoke else 5)  # let start-up transients pass (idle memory)
    per_agent = []
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if not actor["name"].startswith(boss.path):
            continue
        h = ray.get_actor(actor["name"], namespace=actor["namespace"])
        pid = await h.process_id.remote()
        info = await h.get_info.remote()
        cid = sh("docker", "ps", "-q", "--filter", f"label=orchestrator.agent={info.id}").strip()
        per_agent.append(rss_mb(pid) + container_mb(cid))
    metrics["agent_memory_mb"] = {"value": round(statistics.mean(per_agent), 1)}
    metrics["idle_agents"] = {"value": len(per_agent)}
    await asyncio.gather(*(parent.fire.remote(i.id) for i in infos))
    await rt.fire(boss.id)

    # burst: many hires at once; the node admits their desktop starts a few at a time.
    ours = await burst_only(rt, args.burst, args.burst_runs)
    ray.shutdown()
    base = burst_baseline(args.burst) if not (args.smoke or os.environ.get("RAY_ADDRESS")) else ours
    record(f"burst_{args.burst}", ours["ms"], base["ms"])
    metrics[f"burst_{args.burst}"].update(
        failed=max(ours["failed"]), baseline_failed=base["failed"][0]
    )
    for e in (*ours["errors"], *base["errors"])[:3]:
        print("burst error:", e)

    return report(metrics, args.json)


def report(metrics: dict[str, Any], path: Path | None) -> int:
    """Print the table and write the JSON (to ``path``)."""
    print(f"{'metric':<16} {'p50 ms':>10} {'p95 ms':>10} {'baseline p50':>13} {'ratio':>7}")
    for name, m in metrics.items():
        if "value" in m:
            print(f"{name:<16} {m['value']:>10}")
            continue
        ratio = m["baseline_p50_ms"] / m["p50_ms"] if m["p50_ms"] else float("inf")
        print(
            f"{name:<16} {m['p50_ms']:>10.1f} {m['p95_ms']:>10.1f} "
            f"{m['baseline_p50_ms']:>13.1f} {ratio:>6.1f}x"
            + (
                f"  failed {m['failed']}, baseline failed {m['baseline_failed']}"
                if "failed" in m
                else ""
            )
        )
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"metrics": metrics}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
