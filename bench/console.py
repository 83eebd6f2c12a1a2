"""Benchmark: the web console in a real browser (Debian's Chromium, driven by Playwright),
against a real Serve deployment with real agents and desktops on a local Ray cluster.

- first_event_paint: from an event being recorded (its ``at``, stamped by the agent's actor)
  to its ``event-<seq>`` element being painted in the console page (the page's wall clock,
  ``performance.timeOrigin + performance.now()``, at the animation frame after a
  MutationObserver saw the element), p50 over --events events of short scripted tasks.
- relay_first_frame: from the page asking for a live desktop (minting a view ticket with
  its session cookie) to noVNC's first FramebufferUpdate through the API's relay being
  complete. Baseline (``baseline_p50_ms``, same run, same page, same noVNC ``RFB`` class,
  same detection): the direct loopback noVNC link of ``GET /v1/agents/{id}/live-view``
  (fetched, then its websocket opened with the desktop's VNC password). The two alternate,
  after a warm-up of each. ``ratio`` = p50 / baseline p50 (the target is <= 1.3).
- relay_cpu_8: 8 live streams through the relay at once, from one page, while each desktop
  prints a terminal line every 100 ms (an xterm); for --cpu-seconds (30) seconds.
  ``value``: CPU-seconds per second of the API's Serve replica processes and Serve's HTTP
  proxy (the websocket passes through it), plus the agents' actor processes' CPU minus
  theirs measured over the same length with the same printing and no stream. Read from
  /proc of those processes (pids from the actors themselves); x11vnc and websockify in the
  containers and the browser are not counted. The parts are in the JSON.
- js_gzip_kb: the gzip size (level 9) of every JS file of serve_app/console/dist, in KiB.

Targets (a 2-core machine): first_event_paint p50 <= 300 ms; relay_first_frame p50 <= 1.5 s
and <= 1.3x the direct link; relay_cpu_8 <= 0.5; js_gzip_kb <= 400.

Needs the console built (scripts/setup.sh), Docker with the desktop image and Chromium
(/usr/lib/chromium/chromium).

    python bench/console.py [--json PATH] [--events N] [--frames N] [--streams N]
                            [--cpu-seconds S] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import secrets
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import ray
from playwright.async_api import BrowserContext, Page, Route, async_playwright
from ray import serve

from actors import NAMESPACE, Runtime, init_ray
from orchestrator.image import default_image
from serve_app import deploy

HOST = "127.0.0.1"
TENANT = "bench-console"
CHROMIUM = "/usr/lib/chromium/chromium"
CONSOLE = Path(__file__).resolve().parents[1] / "serve_app" / "console"
DIST = CONSOLE / "dist"
NOVNC = CONSOLE / "node_modules" / "@novnc" / "novnc"
BENCH = "/console/__bench__/"
"""Where the benchmark's own page is served (by the browser's router, on the API's origin,
so the relay's Origin check sees the API's own origin)."""
TARGETS = [
    ("first_event_paint", "p50_ms", "<=", 300.0),
    ("relay_first_frame", "p50_ms", "<=", 1500.0),
    ("relay_first_frame", "ratio", "<=", 1.3),
    ("relay_cpu_8", "value", "<=", 0.5),
    ("js_gzip_kb", "value", "<=", 400.0),
]
TICK = os.sysconf("SC_CLK_TCK")

BENCH_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>console bench</title></head>
<body style="margin:0">
<script type="module">
import RFB from "./novnc/core/rfb.js";

const open = [];

// Resolves with the ms from t0 to the end of the first FramebufferUpdate; counts the rest.
function watch(rfb, t0) {
  return new Promise((resolve, reject) => {
    const update = rfb._framebufferUpdate.bind(rfb);
    let first = null;
    rfb.frames = 0;
    rfb._framebufferUpdate = () => {
      const done = update();
      if (done) {
        rfb.frames += 1;
        if (first === null) { first = performance.now() - t0; resolve(first); }
      }
      return done;
    };
    rfb.addEventListener("disconnect", (e) => {
      if (first === null) reject(new Error("closed before a frame: " + JSON.stringify(e.detail)));
    });
    rfb.addEventListener("securityfailure", (e) =>
      reject(new Error("security failure: " + JSON.stringify(e.detail))));
  });
}

async function connect(agentId, how) {
  const t0 = performance.now();
  const options = { shared: true, wsProtocols: ["binary"] };
  let url;
  if (how === "relay") {
    const r = await fetch(`/v1/agents/${agentId}/tickets`, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify({ mode: "view" }),
    });
    if (!r.ok) throw new Error(`ticket: ${r.status} ${await r.text()}`);
    url = `ws://${location.host}${(await r.json()).relay_path}`;
  } else {
    const r = await fetch(`/v1/agents/${agentId}/live-view`, { credentials: "same-origin" });
    if (!r.ok) throw new Error(`live-view: ${r.status} ${await r.text()}`);
    const link = new URL((await r.json()).url);
    options.credentials = { password: new URLSearchParams(link.hash.slice(1)).get("password") };
    url = `ws://${link.host}/${link.searchParams.get("path")}`;
  }
  const target = document.createElement("div");
  target.style.cssText = "width:480px;height:360px;display:inline-block";
  document.body.append(target);
  const asked = performance.now() - t0;  // the ticket or the link, fetched
  const rfb = new RFB(target, url, options);
  rfb.viewOnly = true;
  rfb.scaleViewport = true;
  const ms = await watch(rfb, t0);
  const canvas = target.querySelector("canvas");
  const client = { rfb, target, canvas };
  open.push(client);
  return { ms, asked, width: canvas.width, height: canvas.height };
}

window.bench = {
  async firstFrame(agentId, how) {
    const got = await connect(agentId, how);
    window.bench.closeAll();
    return got;
  },
  async openMany(ids) { return Promise.all(ids.map((id) => connect(id, "relay"))); },
  frames() { return open.map((c) => c.rfb.frames); },
  closeAll() {
    for (const c of open.splice(0)) { c.rfb.disconnect(); c.target.remove(); }
  },
};
window.benchReady = true;
</script>
</body></html>
"""

PAINT_WATCH = """() => {
  window.__paint = {};
  const stamp = (seq) => {
    if (seq in window.__paint) return;
    window.__paint[seq] = null;
    requestAnimationFrame(() => {
      window.__paint[seq] = performance.timeOrigin + performance.now();
    });
  };
  const see = (el) => {
    const m = /^event-(\\d+)$/.exec(el.getAttribute("data-testid") || "");
    if (m) stamp(m[1]);
  };
  const scan = (n) => {
    if (n.nodeType !== 1) return;
    see(n);
    n.querySelectorAll("[data-testid^='event-']").forEach(see);
  };
  new MutationObserver((changes) => {
    for (const c of changes) {
      if (c.type === "attributes") see(c.target);
      c.addedNodes.forEach(scan);
    }
  }).observe(document.body, {
    subtree: true, childList: true, attributes: true, attributeFilter: ["data-testid"],
  });
}"""


def pct(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


async def until(probe: Any, what: str, timeout_s: float = 60, interval_s: float = 0.1) -> Any:
    """Await ``probe()`` until truthy, or raise with its last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        last = await probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not within {timeout_s} s (last {last!r})")
        await asyncio.sleep(interval_s)  # polling interval of a deadline-bound wait


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes (every thread), in seconds."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / TICK


def js_gzip_kb() -> dict[str, Any]:
    files = sorted(DIST.rglob("*.js"))
    if not files:
        raise RuntimeError(f"no JS in {DIST}: build the console (scripts/setup.sh)")
    sizes = {str(f.relative_to(DIST)): len(gzip.compress(f.read_bytes(), 9)) for f in files}
    return {"value": round(sum(sizes.values()) / 1024, 1), "files": sizes}


async def serve_pids() -> tuple[list[int], list[int]]:
    """The pids of the API's replica processes and of Serve's HTTP proxies."""
    replicas: list[int] = []
    proxies: list[int] = []
    for a in ray.util.list_named_actors(all_namespaces=True):
        if a["namespace"] != "serve":
            continue
        kind = replicas if a["name"].startswith("SERVE_REPLICA") else proxies
        if kind is proxies and not a["name"].startswith("SERVE_PROXY"):
            continue
        handle = ray.get_actor(a["name"], namespace="serve")
        kind.append(await handle.__ray_call__.remote(lambda _self: os.getpid()))
    assert replicas and proxies, ray.util.list_named_actors(all_namespaces=True)
    return replicas, proxies


async def agent_pids(infos: list[dict[str, Any]]) -> list[int]:
    pids = []
    for info in infos:
        handle = ray.get_actor(info["actor"] or info["path"], namespace=NAMESPACE)
        pids.append(await handle.process_id.remote())
    return pids


class Bench:
    """The API, its tenant's key, and the agents made for the run."""

    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.key = key
        self.http = httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120
        )
        self.agents: list[dict[str, Any]] = []

    async def create_agents(self, n: int) -> list[dict[str, Any]]:
        async def one(i: int) -> dict[str, Any]:
            spec = {
                "name": f"desk{i}-{os.getpid()}",
                "role": "bench",
                "desktop": {"image": default_image(), "width": 1024, "height": 768},
            }
            r = await self.http.post("/v1/agents", json=spec)
            assert r.status_code == 201, r.text
            info: dict[str, Any] = r.json()
            self.agents.append(info)
            return info

        made = []
        for start in range(0, n, 4):  # four at a time: a 2-core machine
            made += await asyncio.gather(*(one(i) for i in range(start, min(n, start + 4))))
        return made

    async def run_task(self, agent_id: str, command: str) -> dict[str, Any]:
        body = {
            "description": "bench",
            "script": {"steps": [{"type": "shell", "command": command}]},
        }
        r = await self.http.post(f"/v1/agents/{agent_id}/tasks", json=body)
        assert r.status_code == 202, r.text
        task_id = r.json()["id"]

        async def ended() -> dict[str, Any] | None:
            t: dict[str, Any] = (await self.http.get(f"/v1/tasks/{task_id}")).json()
            return t if t["state"] in ("succeeded", "failed", "cancelled") else None

        task: dict[str, Any] = await until(ended, f"task {task_id} ends", 60, 0.05)
        assert task["state"] == "succeeded", task
        return task

    async def shell(self, agent_id: str, command: str) -> None:
        r = await self.http.post(
            f"/v1/agents/{agent_id}/shell", json={"command": command, "timeout_s": 30}
        )
        assert r.status_code == 200 and r.json()["exit_code"] == 0, r.text

    async def close(self) -> None:
        for info in self.agents:
            try:
                await self.http.delete(f"/v1/agents/{info['id']}", timeout=120)
            except httpx.HTTPError as e:
                print(f"could not fire {info['id']}: {e}", file=sys.stderr)
        await self.http.aclose()


async def route_bench(route: Route) -> None:
    """Serve the bench page and noVNC's modules (from the console's node_modules)."""
    path = route.request.url.split(BENCH, 1)[1].split("?", 1)[0]
    if path == "page.html":
        await route.fulfill(body=BENCH_PAGE, content_type="text/html")
        return
    file = (CONSOLE / "node_modules" / "@novnc" / path).resolve()
    if path.startswith("novnc/") and file.is_relative_to(NOVNC) and file.is_file():
        await route.fulfill(body=file.read_bytes(), content_type="text/javascript")
    else:
        print(f"bench page: no {path}", file=sys.stderr)
        await route.fulfill(status=404, body="not found")


async def signed_in(ctx: BrowserContext, bench: Bench) -> None:
    r = await ctx.request.post(
        f"{bench.url}/v1/session", data={"key": bench.key}, headers={"Origin": bench.url}
    )
    assert r.status == 200, await r.text()


async def first_event_paint(page: Page, bench: Bench, agent_id: str, n: int) -> dict[str, Any]:
    await page.goto(f"{bench.url}/console/")
    await page.get_by_test_id("event-log").wait_for(state="attached", timeout=60_000)
    await page.evaluate(PAINT_WATCH)
    samples: list[float] = []
    tasks = 0
    while len(samples) < n and tasks < 4 * n:
        task = await bench.run_task(agent_id, f"echo paint {tasks}")
        tasks += 1
        r = await bench.http.get(f"/v1/tasks/{task['id']}/events", params={"limit": 1000})
        events = r.json()["events"]

        async def painted(events: list[dict[str, Any]] = events) -> dict[str, float] | None:
            seen: dict[str, float | None] = await page.evaluate("window.__paint")
            stamps = {str(e["seq"]): seen.get(str(e["seq"])) for e in events}
            done = {k: v for k, v in stamps.items() if v is not None}
            return done if len(done) == len(stamps) else None

        try:  # every event of the task painted (the log may leave some kinds out: then not)
            stamps = await until(painted, "the task's events painted", 3, 0.02)
        except TimeoutError:
            seen = await page.evaluate("window.__paint")
            stamps = {k: v for e in events if (v := seen.get(k := str(e["seq"]))) is not None}
        samples += [
            stamps[str(e["seq"])] - e["at"] * 1000 for e in events if str(e["seq"]) in stamps
        ]
    if not samples:
        raise RuntimeError(f"no event of {tasks} tasks was painted as event-<seq>")
    return {
        "p50_ms": round(pct(samples, 50), 1),
        "p95_ms": round(pct(samples, 95), 1),
        "samples": len(samples),
    }


async def relay_first_frame(page: Page, agent_id: str, n: int) -> dict[str, Any]:
    await page.wait_for_function("window.benchReady === true")
    got: dict[str, list[float]] = {"relay": [], "direct": []}
    asked: dict[str, list[float]] = {"relay": [], "direct": []}
    for how in ("relay", "direct"):  # warm-up: the proxy started, the code paths run once
        await page.evaluate("([a, h]) => window.bench.firstFrame(a, h)", [agent_id, how])
    for i in range(n):
        for how in ("relay", "direct") if i % 2 == 0 else ("direct", "relay"):
            r = await page.evaluate("([a, h]) => window.bench.firstFrame(a, h)", [agent_id, how])
            assert (r["width"], r["height"]) == (1024, 768), r
            got[how].append(r["ms"])
            asked[how].append(r["asked"])
    p50, base = pct(got["relay"], 50), pct(got["direct"], 50)
    return {
        "p50_ms": round(p50, 1),
        "p95_ms": round(pct(got["relay"], 95), 1),
        "baseline_p50_ms": round(base, 1),
        "baseline_p95_ms": round(pct(got["direct"], 95), 1),
        "ratio": round(p50 / base, 2),
        "samples": n,
        # of which: minting the ticket (relay) / fetching the live-view link (direct)
        "ticket_p50_ms": round(pct(asked["relay"], 50), 1),
        "baseline_link_p50_ms": round(pct(asked["direct"], 50), 1),
    }


PRINTER = (
    "xterm -geometry 120x45+0+0 -e sh -c 'i=0; while [ $i -lt {lines} ]; do i=$((i+1)); "
    'echo "line $i $(date +%T.%N)"; sleep 0.1; done\' >/dev/null 2>&1 & '
    "xdotool search --sync --onlyvisible --class xterm >/dev/null"
)


async def relay_cpu(
    page: Page, bench: Bench, agents: list[dict[str, Any]], seconds: float
) -> dict[str, Any]:
    replicas, proxies = await serve_pids()
    agents_p = await agent_pids(agents)
    lines = int((2 * seconds + 60) * 10)
    await asyncio.gather(*(bench.shell(a["id"], PRINTER.format(lines=lines)) for a in agents))

    async def measure() -> tuple[float, float, float]:
        before = (cpu_seconds(replicas), cpu_seconds(proxies), cpu_seconds(agents_p))
        t0 = time.monotonic()
        await asyncio.sleep(seconds)  # the measurement window itself
        took = time.monotonic() - t0
        after = (cpu_seconds(replicas), cpu_seconds(proxies), cpu_seconds(agents_p))
        a, b, c = (x - y for x, y in zip(after, before, strict=True))
        return a / took, b / took, c / took

    api_idle, proxy_idle, agents_idle = await measure()
    await page.wait_for_function("window.benchReady === true")
    opened = await page.evaluate("(ids) => window.bench.openMany(ids)", [a["id"] for a in agents])
    assert len(opened) == len(agents), opened
    frames0 = await page.evaluate("window.bench.frames()")
    api, proxy, agents_cpu = await measure()
    frames1 = await page.evaluate("window.bench.frames()")
    await page.evaluate("window.bench.closeAll()")
    per_stream = [(b - a) / seconds for a, b in zip(frames0, frames1, strict=True)]
    assert min(per_stream) > 1, f"a stream got almost no updates: {per_stream}"
    relay_agents = max(0.0, agents_cpu - agents_idle)
    return {
        "value": round(api + proxy + relay_agents, 3),
        "api_replicas": round(api, 3),
        "serve_proxy": round(proxy, 3),
        "agents_streaming": round(agents_cpu, 3),
        "agents_idle": round(agents_idle, 3),
        "api_replicas_idle": round(api_idle, 3),
        "serve_proxy_idle": round(proxy_idle, 3),
        "streams": len(agents),
        "updates_per_s_per_stream": round(statistics.median(per_stream), 1),
        "seconds": seconds,
    }


def cli() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--events", type=int, default=20, help="events painted (first_event_paint)")
    ap.add_argument("--frames", type=int, default=10, help="first frames of each kind")
    ap.add_argument("--streams", type=int, default=8, help="live streams at once (relay_cpu_8)")
    ap.add_argument("--cpu-seconds", type=float, default=30.0)
    ap.add_argument("--smoke", action="store_true", help="a quick run: checks it works")
    args = ap.parse_args()
    if args.smoke:
        args.events, args.frames, args.streams, args.cpu_seconds = 4, 2, 2, 3.0
    return asyncio.run(main(args))


async def main(args: argparse.Namespace) -> int:
    metrics: dict[str, Any] = {"js_gzip_kb": js_gzip_kb()}
    os.environ.pop("RAY_ADDRESS", None)  # always a cluster of our own
    init_ray(desktops=args.streams + 2)
    work = Path(tempfile.mkdtemp(prefix="bench-console-"))
    Runtime.connect(data_dir=work / "records")
    key = secrets.token_urlsafe(24)
    keys_file = work / "api-keys"
    keys_file.write_text(f"{TENANT}:{key}\n")
    url = deploy(port=free_port(), keys_file=str(keys_file))
    bench = Bench(url, key)
    try:

        async def healthy() -> bool:
            try:
                return (await bench.http.get("/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await until(healthy, "/healthz", 120)
        r = await bench.http.get("/console/")
        assert r.status_code == 200, f"the console is not served: {r.status_code} {r.text[:200]}"
        agents = await bench.create_agents(args.streams)
        async with async_playwright() as p:
            # The bench page is served by the browser's router (an address Chromium deems
            # public): without this, its connections to the direct loopback link (the
            # baseline) are refused by Chromium's local network access checks.
            browser = await p.chromium.launch(
                executable_path=CHROMIUM, args=["--disable-features=LocalNetworkAccessChecks"]
            )
            ctx = await browser.new_context(viewport={"width": 1440, "height": 900})
            await ctx.route(f"{url}{BENCH}**", route_bench)
            await signed_in(ctx, bench)
            console_page = await ctx.new_page()
            metrics["first_event_paint"] = await first_event_paint(
                console_page, bench, agents[0]["id"], args.events
            )
            await console_page.close()  # its tiles' screenshots would load the API below
            page = await ctx.new_page()
            await page.goto(f"{url}{BENCH}page.html")
            metrics["relay_first_frame"] = await relay_first_frame(
                page, agents[0]["id"], args.frames
            )
            metrics["relay_cpu_8"] = await relay_cpu(page, bench, agents, args.cpu_seconds)
            await browser.close()
    finally:
        await bench.close()
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    return report(metrics, args.json)


def report(metrics: dict[str, Any], path: Path | None) -> int:
    """Print the table, check the targets and write the JSON (to ``path``)."""
    table = [f"{'metric':<20} {'p50 ms':>9} {'p95 ms':>9} {'baseline p50':>13} {'ratio':>7}"]
    for name in ("first_event_paint", "relay_first_frame", "relay_cpu_8", "js_gzip_kb"):
        m = metrics.get(name)
        if m is None:
            continue
        if "value" in m:
            table.append(f"{name:<20} {m['value']:>9}")
        elif "baseline_p50_ms" in m:
            table.append(
                f"{name:<20} {m['p50_ms']:>9.1f} {m['p95_ms']:>9.1f} "
                f"{m['baseline_p50_ms']:>13.1f} {m['ratio']:>6.2f}x"
            )
        else:
            table.append(f"{name:<20} {m['p50_ms']:>9.1f} {m['p95_ms']:>9.1f}")
    missed = []
    for name, field, op, limit in TARGETS:
        value = metrics[name][field]
        if not (value <= limit if op == "<=" else value >= limit):
            missed.append(f"{name}.{field} = {value} (target {op} {limit})")
    table.append("targets: " + ("met" if not missed else "missed: " + "; ".join(missed)))
    print("\n".join(table))
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        out = {"metrics": metrics, "missed": missed, "table": table}
        path.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(cli())
