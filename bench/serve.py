"""Benchmark: the HTTP API on Ray Serve, against the same FastAPI app on plain uvicorn,
measured in the same run, on the same Ray cluster, with the same requests.

- status_read_c1: ``GET /v1/tasks/{id}`` (a valid API key, a real agent with a real
  desktop, a finished scripted task), one client, one request after another.
- assign_c1: ``POST /v1/agents/{id}/tasks`` with a trivial scripted task (answers 202 at
  once; the agent runs it in the background), one client.
- status_read_c16: the status read with 16 clients at once (latency of each request).
- status_qps_c16: requests per second the API answers with 16 clients at once.
- healthz_c1: ``GET /healthz`` (no key, no call to anything) at one client: the floor
  under every route, i.e. the cost of the HTTP path itself.

Baseline: ``serve_app.build_app(keys)`` served by plain uvicorn on 127.0.0.1 in a Ray actor
of the same cluster, started with the deployment's actor options (so the handler, the
recorder, the agent and the process's priority are the same; what differs is Serve's
proxy, router and replica). The two are measured in alternating rounds, so that load from
anything else on the machine falls on both alike. Requests go through a minimal HTTP/1.1
keep-alive client, so that the client's own cost stays small.

Targets (a 2-core machine): a status read at one client p50 <= 5 ms and p99 <= 20 ms; at
least 300 status reads per second at 16 clients.

    python bench/serve.py [--json PATH] [--requests N] [--assigns N] [--c16-requests N] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import ray
from ray import serve

from actors import Runtime, init_ray
from orchestrator.image import default_image
from serve_app import deploy
from serve_app._app import ApiDeployment

HOST = "127.0.0.1"
TENANT = "bench-serve"
OTHER = "bench-serve-other"
ROUNDS = 4
"""Serve and the baseline take turns this many times per metric."""
TARGETS = [
    ("status_read_c1", "p50_ms", "<=", 5.0),
    ("status_read_c1", "p99_ms", "<=", 20.0),
    ("status_qps_c16", "value", ">=", 300.0),
]


def pct(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


class Conn:
    """One keep-alive HTTP/1.1 connection; requests are pre-encoded bytes."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()
        self.reader = self.writer = None

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if line:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                parts.append(await self.reader.readexactly(size + 2))
                if size == 0:
                    break
            body = b"".join(p[:-2] for p in parts)
        else:
            body = await self.reader.read()
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, body


def request(method: str, path: str, key: str, body: dict[str, Any] | None = None) -> bytes:
    data = json.dumps(body).encode() if body is not None else b""
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Length: {len(data)}\r\n"
    )
    if body is not None:
        head += "Content-Type: application/json\r\n"
    return head.encode() + b"\r\n" + data


async def timed(conn: Conn, raw: bytes, expect: int) -> float:
    t0 = time.perf_counter()
    status, body = await conn.send(raw)
    ms = (time.perf_counter() - t0) * 1000
    if status != expect:
        raise RuntimeError(f"expected {expect}, got {status}: {body[:300]!r}")
    return ms


async def sequential(port: int, raw: bytes, n: int, expect: int) -> list[float]:
    conn = Conn(port)
    try:
        return [await timed(conn, raw, expect) for _ in range(n)]
    finally:
        await conn.close()


async def concurrent(port: int, raw: bytes, n: int, clients: int) -> tuple[list[float], float]:
    """``n`` requests from ``clients`` connections at once: latencies and requests/s."""
    conns = [Conn(port) for _ in range(clients)]
    await asyncio.gather(*(c.open() for c in conns))
    for c in conns:  # one request each first, so that every connection is warm
        await timed(c, raw, 200)
    left = n
    latencies: list[float] = []

    async def client(c: Conn) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            latencies.append(await timed(c, raw, 200))

    t0 = time.perf_counter()
    try:
        await asyncio.gather(*(client(c) for c in conns))
        elapsed = time.perf_counter() - t0
    finally:
        await asyncio.gather(*(c.close() for c in conns))
    return latencies, len(latencies) / elapsed


async def alternate(
    measure: Callable[[int], Awaitable[list[float]]], ports: tuple[int, int]
) -> tuple[list[float], list[float]]:
    """``measure(port)`` in ROUNDS turns for Serve and the baseline, Serve first or second
    by turns; returns (serve, baseline) samples."""
    ours: list[float] = []
    base: list[float] = []
    for r in range(ROUNDS):
        order = [(ports[0], ours), (ports[1], base)]
        for port, out in order if r % 2 == 0 else order[::-1]:
            out += await measure(port)
    return ours, base


class BaselineServer:
    """The same app on plain uvicorn, in a Ray actor (started with the replica's actor
    options, so that it runs as a Ray worker like the replica: same niceness, same env)."""

    async def start(self, port: int, keys_file: str) -> None:
        import uvicorn

        from serve_app import KeyStore, build_app

        app = build_app(KeyStore.from_env(keys_file))
        config = uvicorn.Config(app, host=HOST, port=port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.05)  # polling until uvicorn listens

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.task


async def wait_healthy(port: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            conn = Conn(port)
            status, _ = await conn.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            await conn.close()
            if status == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing healthy on port {port} after {timeout_s} s")
        await asyncio.sleep(0.2)  # polling interval of a deadline-bound wait


def cli() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--requests", type=int, default=600, help="status reads at one client")
    ap.add_argument("--assigns", type=int, default=120, help="assigns at one client")
    ap.add_argument("--c16-requests", type=int, default=1600, help="status reads at 16 clients")
    ap.add_argument("--smoke", action="store_true", help="a quick run: checks it works")
    args = ap.parse_args()
    if args.smoke:
        args.requests, args.assigns, args.c16_requests = 8, 4, 64
    return asyncio.run(main(args))


async def main(args: argparse.Namespace) -> int:
    os.environ.pop("RAY_ADDRESS", None)  # always a cluster of our own
    init_ray(desktops=4)
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    rt = Runtime.connect(data_dir=work / "records")
    keys = {TENANT: secrets.token_urlsafe(24), OTHER: secrets.token_urlsafe(24)}
    keys_file = work / "api-keys"
    keys_file.write_text("".join(f"{t}:{k}\n" for t, k in keys.items()))
    key = keys[TENANT]

    serve_port, base_port = free_port(), free_port()
    deploy(port=serve_port, keys_file=str(keys_file))
    options = {**ApiDeployment.ray_actor_options, "max_concurrency": 1000}  # type: ignore[attr-defined]
    baseline: Any = ray.remote(BaselineServer).options(**options).remote()
    agent_id: str | None = None
    metrics: dict[str, Any] = {}
    try:
        await baseline.start.remote(base_port, str(keys_file))
        await wait_healthy(serve_port)
        await wait_healthy(base_port)
        conn = Conn(serve_port)
        spec = {
            "name": f"desk-{os.getpid()}",
            "role": "bench",
            "desktop": {"image": default_image()},
        }
        status, body = await conn.send(request("POST", "/v1/agents", key, spec))
        assert status == 201, body
        agent_id = json.loads(body)["id"]
        echo = {
            "description": "echo",
            "script": {"steps": [{"type": "shell", "command": "echo hi"}]},
        }
        status, body = await conn.send(request("POST", f"/v1/agents/{agent_id}/tasks", key, echo))
        assert status == 202, body
        task_id = json.loads(body)["id"]
        read = request("GET", f"/v1/tasks/{task_id}", key)
        deadline = time.monotonic() + 60
        while True:
            status, body = await conn.send(read)
            task = json.loads(body)
            if task["state"] == "succeeded":
                break
            assert task["state"] in ("pending", "running"), task
            assert time.monotonic() < deadline, task
            await asyncio.sleep(0.1)  # polling interval of a deadline-bound wait
        await conn.close()
        # The same answer from both, and another tenant's key gets 404 from both.
        for port in (serve_port, base_port):
            c = Conn(port)
            status, body = await c.send(read)
            assert status == 200 and json.loads(body)["id"] == task_id, body
            status, body = await c.send(request("GET", f"/v1/tasks/{task_id}", keys[OTHER]))
            assert status == 404, (status, body)
            await c.close()

        ports = (serve_port, base_port)
        for port in ports:  # warm up both paths
            await sequential(port, read, 10 if args.smoke else 100, 200)

        def record(name: str, ours: list[float], base: list[float]) -> None:
            metrics[name] = {
                "p50_ms": round(pct(ours, 50), 2),
                "p99_ms": round(pct(ours, 99), 2),
                "baseline_p50_ms": round(pct(base, 50), 2),
                "baseline_p99_ms": round(pct(base, 99), 2),
            }

        per_round = max(1, args.requests // ROUNDS)
        ours, base = await alternate(lambda p: sequential(p, read, per_round, 200), ports)
        record("status_read_c1", ours, base)
        # The floor: a route that needs no key and calls nothing (Serve's own cost).
        health = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        ours, base = await alternate(lambda p: sequential(p, health, per_round // 2, 200), ports)
        record("healthz_c1", ours, base)

        qps: dict[int, list[float]] = {serve_port: [], base_port: []}

        async def c16(port: int) -> list[float]:
            lat, rate = await concurrent(port, read, max(16, args.c16_requests // ROUNDS), 16)
            qps[port].append(rate)
            return lat

        ours, base = await alternate(c16, ports)
        record("status_read_c16", ours, base)
        metrics["status_qps_c16"] = {"value": round(statistics.median(qps[serve_port]), 1)}
        metrics["status_qps_c16_baseline"] = {"value": round(statistics.median(qps[base_port]), 1)}

        trivial = {"description": "nothing", "script": {"steps": []}}
        assign = request("POST", f"/v1/agents/{agent_id}/tasks", key, trivial)
        per_round = max(1, args.assigns // ROUNDS)
        ours, base = await alternate(lambda p: sequential(p, assign, per_round, 202), ports)
        record("assign_c1", ours, base)
    finally:
        if agent_id is not None:
            try:
                await asyncio.wait_for(rt.fire(agent_id), timeout=120)
            except Exception as e:  # noqa: BLE001 - report, then clean up the rest anyway
                print(f"could not fire {agent_id}: {e}", file=sys.stderr)
        try:
            await asyncio.wait_for(baseline.stop.remote(), timeout=30)
        except Exception as e:  # noqa: BLE001 - report, then clean up the rest anyway
            print(f"could not stop the baseline: {e}", file=sys.stderr)
        ray.kill(baseline)
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)  # the records and the keys file

    print(
        f"{'metric':<24} {'p50 ms':>8} {'p99 ms':>8} {'base p50':>9} {'base p99':>9} {'ratio':>7}"
    )
    for name, m in metrics.items():
        if "value" in m:
            print(f"{name:<24} {m['value']:>8}")
            continue
        ratio = m["baseline_p50_ms"] / m["p50_ms"] if m["p50_ms"] else float("inf")
        print(
            f"{name:<24} {m['p50_ms']:>8.2f} {m['p99_ms']:>8.2f} "
            f"{m['baseline_p50_ms']:>9.2f} {m['baseline_p99_ms']:>9.2f} {ratio:>6.2f}x"
        )
    missed = []
    for name, field, op, limit in TARGETS:
        value = metrics[name][field]
        if not (value <= limit if op == "<=" else value >= limit):
            missed.append(f"{name}.{field} = {value} (target {op} {limit})")
    print("targets: " + ("met" if not missed else "missed: " + "; ".join(missed)))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"metrics": metrics}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(cli())
