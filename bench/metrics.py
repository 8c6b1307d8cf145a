"""A stampede as atomcache's metrics show it: counters over time, summed over a fleet.

Starts a throwaway `redis-server` (unless ATOMCACHE_REDIS_URL is set) and 4 worker
processes. At one agreed moment each worker's 100 callers ask for one cold key whose
computation takes 200 ms, then each caller reads it 10 more times. Each worker
reports to a Prometheus registry of its own (`PrometheusObserver`) and reads it every
10 ms, from 100 ms before the start to 1 s after; the fleet's series is the sum of
the workers' readings at each moment. Written to bench/results/metrics.json;
bench/report.py draws `metrics.png` from it.

    python bench/metrics.py [--processes 4] [--callers 100]
"""

# ruff: noqa: E402

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
# bench/http.py would stand in for the standard library's `http` (see its header).
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH]
sys.path.insert(0, str(BENCH.parent / "tests"))

from prometheus_client import CollectorRegistry

from atomcache_core import Cache
from atomcache_core.observability import PrometheusObserver
from support.redis_server import RedisServer

RESULTS = Path(__file__).with_name("results")
COMPUTE_S = 0.2
READS_AFTER = 10
STEP_S = 0.01
BEFORE_S, AFTER_S = 0.1, 1.0
SERIES = {
    "reads: miss": ("atomcache_lookups_total", {"outcome": "miss"}),
    "reads: hit": ("atomcache_lookups_total", {"outcome": "hit"}),
    "computations": ("atomcache_computation_duration_seconds_count", {}),
    "waits ended (notified)": ("atomcache_wait_duration_seconds_count", {"wakeup": "notified"}),
}


def reading(registry: CollectorRegistry) -> dict[str, float]:
    """Each series' current total in `registry`."""
    totals = dict.fromkeys(SERIES, 0.0)
    for family in registry.collect():
        for sample in family.samples:
            for series, (name, labels) in SERIES.items():
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    totals[series] += sample.value
    return totals


async def work(url: str, namespace: str, callers: int, start_at: float) -> list[dict[str, Any]]:
    """One worker: the stampede at `start_at` (wall clock), read every STEP_S."""
    registry = CollectorRegistry()
    cache = Cache.from_url(url, namespace=namespace, observers=[PrometheusObserver(registry)])
    client = cache.redis_client
    if client is not None:
        await client.ping()  # a connection open before the start
    samples: list[dict[str, Any]] = []

    async def sample() -> None:
        while (moment := time.time() - start_at) < AFTER_S:
            samples.append({"t": moment, **reading(registry)})
            await asyncio.sleep(STEP_S)

    async def compute() -> str:
        await asyncio.sleep(COMPUTE_S)
        return "report"

    async def caller() -> None:
        await cache.get_or_set("report", compute, ttl=60)
        for _ in range(READS_AFTER):
            await cache.get("report")

    await asyncio.sleep(max(0.0, start_at - BEFORE_S - time.time()))
    sampler = asyncio.create_task(sample())
    await asyncio.sleep(max(0.0, start_at - time.time()))
    await asyncio.gather(*(caller() for _ in range(callers)))
    await sampler
    await cache.close()
    return samples


def fleet_series(runs: list[list[dict[str, Any]]]) -> list[dict[str, float]]:
    """At each step, the sum over workers of each one's latest reading."""
    steps = int((BEFORE_S + AFTER_S) / STEP_S)
    series = []
    for step in range(steps):
        moment = -BEFORE_S + step * STEP_S
        row = {"t": moment, **dict.fromkeys(SERIES, 0.0)}
        for samples in runs:
            seen = [sample for sample in samples if sample["t"] <= moment]
            if seen:
                for name in SERIES:
                    row[name] += seen[-1][name]
        series.append(row)
    return series


def main() -> None:
    """Run the fleet; write and print the totals."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--callers", type=int, default=100)
    parser.add_argument(
        "--worker", nargs=3, metavar=("URL", "NAMESPACE", "START"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.worker:
        url, namespace, start = args.worker
        print(json.dumps(asyncio.run(work(url, namespace, args.callers, float(start)))))
        return
    given = os.environ.get("ATOMCACHE_REDIS_URL")
    with contextlib.nullcontext() if given else RedisServer() as server:
        url = given or (server.url if server is not None else "")
        namespace = f"bench-metrics-{uuid.uuid4().hex[:8]}"
        start = time.time() + 3.0  # the workers' imports and connections come first
        workers = [
            subprocess.Popen(
                [
                    *(sys.executable, __file__, "--callers", str(args.callers)),
                    *("--worker", url, namespace, str(start)),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(args.processes)
        ]
        runs = [json.loads(worker.communicate(timeout=120)[0]) for worker in workers]
    series = fleet_series(runs)
    last = series[-1]
    print(
        f"metrics: {args.processes} processes x {args.callers} callers, a "
        f"{COMPUTE_S * 1000:.0f} ms computation; fleet totals at the end: "
        + ", ".join(f"{name} {last[name]:.0f}" for name in SERIES)
    )
    RESULTS.mkdir(exist_ok=True)
    settings = {"processes": args.processes, "callers": args.callers, "compute_s": COMPUTE_S}
    (RESULTS / "metrics.json").write_text(
        json.dumps({"series": series, **settings}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
