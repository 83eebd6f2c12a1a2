"""Benchmark: a local cluster that grows with its agents and shrinks when they are gone
(``orchestrator up --autoscale``: a head with 2 desktop units, worker nodes of 2 units that
Ray's autoscaler starts on this machine), driven through the HTTP API as a user would.

A boss and one more agent fill the head's 2 units first (not timed). Then, per round:

- scale_up: the boss hires 6 specialists at once, beyond the cluster's capacity (three
  worker nodes must start), until all 6 are ready. Baseline: the same 6 hires again right
  after firing them, with the worker nodes still up (same run, same round).
- scale_down: from firing the 6 to the node count back at its start (the head alone);
  target: at most the idle timeout plus 10 s.

    python bench/scale.py [--json PATH] [--rounds N] [--idle-timeout-s S] [--smoke]

Everything is the bench's own (data directory, Ray temp dir, ports), stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from orchestrator import _local_head, local
from orchestrator.local import Autoscale
from orchestrator.sdk import Client

HIRES = 6
WORKER_DESKTOPS = 2
HEAD_DESKTOPS = 2


def pct(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def node_count(data_dir: Path) -> int:
    return len(local.nodes(data_dir))


def wait_nodes(data_dir: Path, want: int, timeout_s: float) -> float:
    """Seconds until the cluster has ``want`` live nodes (RuntimeError at the timeout)."""
    t0 = time.monotonic()
    while (n := node_count(data_dir)) != want:
        if time.monotonic() - t0 > timeout_s:
            raise RuntimeError(f"{n} nodes, not {want}, after {timeout_s:g} s")
        time.sleep(0.25)  # polling interval of a deadline-bound wait
    return time.monotonic() - t0


def hire_all(boss: Any, tag: str, pool: ThreadPoolExecutor) -> tuple[float, list[Any]]:
    """Hire ``HIRES`` specialists at once; (ms until every one is ready, them)."""
    t0 = time.perf_counter()
    futures = [pool.submit(boss.hire, f"{tag}-{i}", role="specialist") for i in range(HIRES)]
    hired = [f.result(timeout=600) for f in futures]
    return (time.perf_counter() - t0) * 1000, hired


def fire_all(hired: list[Any], pool: ThreadPoolExecutor) -> None:
    list(pool.map(lambda a: a.fire(), hired))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--idle-timeout-s", type=float, default=20.0)
    ap.add_argument("--smoke", action="store_true", help="one round")
    args = ap.parse_args()
    rounds = 1 if args.smoke else args.rounds
    data_dir = Path(tempfile.mkdtemp(prefix="bench-scale-")) / "data"
    opts = Autoscale(
        head_desktops=HEAD_DESKTOPS,
        max_workers=HIRES // WORKER_DESKTOPS,
        worker_desktops=WORKER_DESKTOPS,
        idle_timeout_s=args.idle_timeout_s,
    )
    t_up = time.monotonic()
    cluster = local.up(
        api_port=_free_port(),
        dashboard_port=_free_port(),
        data_dir=data_dir,
        autoscale=opts,
        timeout_s=180,
    )
    print(f"cluster up in {time.monotonic() - t_up:.1f} s at {cluster.api_url}", flush=True)  # noqa: T201
    ups: list[float] = []
    bases: list[float] = []
    downs: list[float] = []
    try:
        api = Client(cluster.api_url, cluster.api_key, timeout=600)
        boss = api.create_agent("boss", role="lead")
        api.create_agent("filler", role="idle")  # the head's second unit
        with ThreadPoolExecutor(HIRES) as pool:
            for r in range(rounds):
                wait_nodes(data_dir, 1, args.idle_timeout_s + 60)
                up_ms, hired = hire_all(boss, f"r{r}", pool)
                grown = node_count(data_dir)
                fire_all(hired, pool)
                base_ms, hired = hire_all(boss, f"r{r}b", pool)  # the workers are still up
                kept = node_count(data_dir)
                t_fire = time.monotonic()
                fire_all(hired, pool)
                wait_nodes(data_dir, 1, args.idle_timeout_s + 60)
                down_s = time.monotonic() - t_fire  # from the firing's start
                ups.append(up_ms)
                bases.append(base_ms)
                downs.append(down_s)
                print(  # noqa: T201
                    f"round {r}: scale_up {up_ms / 1000:.1f} s ({grown} nodes), baseline "
                    f"{base_ms / 1000:.1f} s ({kept} nodes), scale_down {down_s:.1f} s",
                    flush=True,
                )
    finally:
        local.down(data_dir, timeout_s=120)
        shutil.rmtree(_local_head.ray_temp_dir(data_dir.resolve()), ignore_errors=True)
        shutil.rmtree(data_dir.parent, ignore_errors=True)
    metrics: dict[str, Any] = {
        "scale_up": {
            "p50_ms": round(pct(ups, 50), 1),
            "p95_ms": round(pct(ups, 95), 1),
            "baseline_p50_ms": round(pct(bases, 50), 1),
            "samples_ms": [round(x, 1) for x in ups],
            "baseline_samples_ms": [round(x, 1) for x in bases],
            "target_p50_ms": 15000,
        },
        "scale_down": {
            "value": round(statistics.median(downs), 1),
            "unit": "s",
            "samples_s": [round(x, 1) for x in downs],
            "idle_timeout_s": args.idle_timeout_s,
            "target_s": args.idle_timeout_s + 10,
        },
    }
    return report(metrics, args.json)


def report(metrics: dict[str, Any], path: Path | None) -> int:
    """Print the table and write the JSON (to ``path``)."""
    up, down = metrics["scale_up"], metrics["scale_down"]
    ratio = up["baseline_p50_ms"] / up["p50_ms"] if up["p50_ms"] else float("inf")
    print(f"{'metric':<12} {'p50 ms':>10} {'p95 ms':>10} {'baseline p50':>13} {'ratio':>7}")  # noqa: T201
    print(  # noqa: T201
        f"{'scale_up':<12} {up['p50_ms']:>10.1f} {up['p95_ms']:>10.1f} "
        f"{up['baseline_p50_ms']:>13.1f} {ratio:>6.2f}x   target p50 <= 15000 ms"
    )
    print(  # noqa: T201
        f"{'scale_down':<12} {down['value']:>9.1f}s   (idle timeout {down['idle_timeout_s']:g} s; "
        f"target <= {down['target_s']:g} s)"
    )
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"metrics": metrics}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
