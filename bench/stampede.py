"""Stampede benchmark: P processes x C callers on one cold key with a 200 ms factory.

Runs atomcache's single flight and a naive get/compute/set baseline in the same run,
each against its own fresh `redis-server`, then both again on a fresh Redis Cluster of
3 masters (`redis+cluster://`, sharded pub/sub), and prints computations, p50/p99 latency
and the Redis commands used: all of them, as counted by the server's
`INFO commandstats` (commands run inside scripts included; the benchmark's own
counting goes to a second server, see bench/_stampede.py). Targets at 4 x 100: one
computation, p99 at most the computation + 25 ms, at most 10 Redis commands per
process for the waiting. The rows go to bench/results/stampede.json; bench/peers.py
runs other caches the same way.

    python bench/stampede.py [--processes 4] [--callers 100] [--compute 0.2]
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for `bench._stampede`

from bench._stampede import Stampede, measure, show, write


async def main() -> None:
    """Run both strategies and print the comparison."""
    load = Stampede.from_arguments(__doc__.splitlines()[0])
    print(f"stampede: {load.describe()}")
    rows = [
        await measure(strategy, load, topology=topology)
        for topology in ("server", "cluster")
        for strategy in ("naive", "atomcache")
    ]
    for row in rows:
        show(row)
    naive, atom = rows[:2]
    print(
        f"atomcache / naive: computations {atom['computations']}/{naive['computations']}, "
        f"p99 overhead over the computation {atom['p99_ms'] - 1000 * load.compute:.1f} ms "
        f"(target <= 25), Redis commands per process, waiting and computing included: "
        f"{atom['commands_per_process']:.1f} (target for the waiting <= 10)"
    )
    cluster = rows[3]
    print(
        f"on the cluster: atomcache computations {cluster['computations']}, p99 "
        f"{cluster['p99_ms']:.1f} ms, {cluster['commands_per_process']:.1f} commands per process"
    )
    write("stampede", rows)


if __name__ == "__main__":
    asyncio.run(main())
