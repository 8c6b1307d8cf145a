"""The stampede measurement shared by bench/stampede.py and bench/peers.py.

One contender at a time, each against its own fresh `redis-server`: P worker processes
(tests/support/fleet.py) with C concurrent callers each, released at once on one cold
key whose factory takes `compute` seconds. A contender is a worker program and the
strategy it runs. The figures: computations (the factory counts its runs on a second
server, so that its counting is neither among the commands nor among the connections
measured), every caller's latency, errors, how many different values the callers got,
and every Redis command the measured server ran from the start signal on (from
`INFO commandstats`, commands run inside scripts and connection handshakes included).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

from support.fleet import Fleet, read_int
from support.redis_server import RedisServer
from support.topology import RedisClusterTopology

if TYPE_CHECKING:
    from collections.abc import Iterator

RESULTS = Path(__file__).with_name("results")
FLEET_WORKER = ("-m", "support.fleet_worker")


@dataclass(frozen=True)
class Stampede:
    """The load every contender gets."""

    processes: int = 4
    callers: int = 100
    compute: float = 0.2

    @classmethod
    def from_arguments(cls, description: str) -> Stampede:
        """Read `--processes`, `--callers` and `--compute` from the command line."""
        parser = argparse.ArgumentParser(description=description)
        parser.add_argument("--processes", type=int, default=cls.processes)
        parser.add_argument("--callers", type=int, default=cls.callers)
        parser.add_argument("--compute", type=float, default=cls.compute)
        args = parser.parse_args()
        return cls(args.processes, args.callers, args.compute)

    def describe(self) -> str:
        """One line saying what the load is."""
        return (
            f"{self.processes} processes x {self.callers} callers, cold key, "
            f"{self.compute * 1000:.0f} ms factory"
        )


@contextlib.contextmanager
def fresh_redis(topology: str) -> Iterator[tuple[str, list[RedisServer]]]:
    """A fresh `server`, or a `cluster` of 3 masters: its URL and the servers to count on."""
    if topology == "cluster":
        with RedisClusterTopology(replicas_per_master=0) as cluster:
            yield cluster.url, list(cluster.masters)
    else:
        with RedisServer() as server:
            yield server.url, [server]


def command_counts(servers: list[RedisServer]) -> dict[str, int]:
    """Commands run by the servers since their statistics were reset, summed, by name."""
    calls: dict[str, int] = {}
    for server in servers:
        with server.client() as client:
            for name, entry in client.info("commandstats").items():
                command = name.removeprefix("cmdstat_")
                calls[command] = calls.get(command, 0) + int(entry["calls"])
    calls.pop("config|resetstat", None)
    return calls


async def measure(
    strategy: str,
    load: Stampede,
    worker: tuple[str, ...] = FLEET_WORKER,
    topology: str = "server",
) -> dict[str, Any]:
    """Run one strategy's workers on a fresh server (or cluster); return its figures."""
    with fresh_redis(topology) as (url, servers), RedisServer() as bookkeeping:
        counting = Redis.from_url(bookkeeping.url)
        fleet = Fleet(
            url,
            processes=load.processes,
            callers=load.callers,
            delay=load.compute,
            strategy=strategy,
            call={"ttl": 60} if strategy == "atomcache" else {},
            worker=worker,
            control_url=bookkeeping.url,
        )
        async with fleet.running():
            for server in servers:
                with server.client() as client:
                    client.config_resetstat()
            await fleet.go()
            reports = await fleet.reports()
        calls = command_counts(servers)
        computations = await read_int(counting, fleet.counter)
        await counting.aclose()
    results = [result for report in reports.values() for result in report["results"]]
    latencies = sorted(1000 * result["latency"] for result in results)
    values = {
        json.dumps(result["value"], sort_keys=True) for result in results if "value" in result
    }
    return {
        "strategy": strategy if topology == "server" else f"{strategy} ({topology})",
        "processes": load.processes,
        "callers": load.callers,
        "compute_s": load.compute,
        "computations": computations,
        "errors": sorted({result["error"] for result in results if "error" in result}),
        "distinct_values": len(values),
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[int(0.99 * (len(latencies) - 1))],
        "max_ms": latencies[-1],
        "latencies_ms": latencies,
        "redis_commands": sum(calls.values()),
        "commands_per_process": sum(calls.values()) / load.processes,
        "commands": calls,
    }


def show(row: dict[str, Any]) -> None:
    """Print one strategy's figures."""
    errors = f", errors: {', '.join(row['errors'])}" if row["errors"] else ""
    print(
        f"{row['strategy']:>22}: {row['computations']:>4} computations, "
        f"p50 {row['p50_ms']:7.1f} ms, p99 {row['p99_ms']:7.1f} ms, "
        f"{row['redis_commands']:>6} Redis commands ({row['commands_per_process']:.1f} per "
        f"process), {row['distinct_values']} distinct values{errors}"
    )


def write(name: str, rows: list[dict[str, Any]]) -> None:
    """Write the rows to bench/results/<name>.json."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(rows, indent=2) + "\n")
