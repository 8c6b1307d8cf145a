"""Stampede benchmark: P processes x C callers on one cold key with a 200 ms factory.

Runs atomcache's single flight and a naive get/compute/set baseline in the same run,
each against its own fresh `redis-server`, and prints computations, p50/p99 latency
and the Redis commands used: all of them, as counted by the server's
`INFO commandstats` (commands run inside scripts included), less the benchmark's own
counters. Targets at 4 x 100: one computation, p99 at most the computation + 25 ms,
at most 10 Redis commands per process for the waiting.

    python bench/stampede.py [--processes 4] [--callers 100] [--compute 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

from support.fleet import Fleet, read_int
from support.redis_server import RedisServer

RESULTS = Path(__file__).with_name("results")
BOOKKEEPING = ("incrby", "rpush", "config|resetstat")  # the benchmark's own counting


async def measure(strategy: str, processes: int, callers: int, compute: float) -> dict[str, Any]:
    """Run one strategy on a fresh server; return its figures."""
    with RedisServer() as server:
        control = Redis.from_url(server.url)
        fleet = Fleet(
            server.url,
            processes=processes,
            callers=callers,
            delay=compute,
            strategy=strategy,
            call={"ttl": 60} if strategy == "atomcache" else {},
        )
        async with fleet.running():
            await control.config_resetstat()
            await fleet.go()
            reports = await fleet.reports()
        stats = await control.info("commandstats")
        computations = await read_int(control, fleet.counter)
        await control.aclose()
    latencies = sorted(result["latency"] for r in reports.values() for result in r["results"])
    calls = {name.removeprefix("cmdstat_"): int(entry["calls"]) for name, entry in stats.items()}
    for name in BOOKKEEPING:
        calls.pop(name, None)
    return {
        "strategy": strategy,
        "processes": processes,
        "callers": callers,
        "compute_s": compute,
        "computations": computations,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
        "redis_commands": sum(calls.values()),
        "commands_per_process": sum(calls.values()) / processes,
        "commands": calls,
    }


def show(row: dict[str, Any]) -> None:
    """Print one strategy's figures."""
    print(
        f"{row['strategy']:>10}: {row['computations']:>4} computations, "
        f"p50 {row['p50_ms']:7.1f} ms, p99 {row['p99_ms']:7.1f} ms, "
        f"{row['redis_commands']:>5} Redis commands ({row['commands_per_process']:.1f} per process)"
    )


async def main() -> None:
    """Run both strategies and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--callers", type=int, default=100)
    parser.add_argument("--compute", type=float, default=0.2)
    args = parser.parse_args()
    print(f"stampede: {args.processes} processes x {args.callers} callers, cold key, "
          f"{args.compute * 1000:.0f} ms factory")  # fmt: skip
    rows = [
        await measure(strategy, args.processes, args.callers, args.compute)
        for strategy in ("naive", "atomcache")
    ]
    for row in rows:
        show(row)
    naive, atom = rows
    print(
        f"atomcache / naive: computations {atom['computations']}/{naive['computations']}, "
        f"p99 overhead over the computation {atom['p99_ms'] - 1000 * args.compute:.1f} ms "
        f"(target <= 25), Redis commands per process, waiting and computing included: "
        f"{atom['commands_per_process']:.1f} (target for the waiting <= 10)"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "stampede.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
