"""Stampede against other caches: 4 processes x 100 callers, one cold key, 200 ms factory.

The load of bench/stampede.py (bench/_stampede.py measures it, each contender against its
own fresh `redis-server`) on: the naive get/compute/set baseline, atomcache's single
flight, cashews with `lock=True`, fastapi-cache2 (no lock), aiocache's `cached_stampede`,
Litestar's response cache (`cache=` on a RedisStore) and atomcache's Litestar `@cached`,
the two last through the app's ASGI interface (bench/_peer_worker.py says how each is set
up, and why). It prints computations, p50/p99 latency and Redis commands per contender
and writes every caller's latency to bench/results/stampede_peers.json, which
bench/report.py plots as a latency distribution.

    python bench/peers.py [--processes 4] [--callers 100] [--compute 0.2]
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for `bench._stampede`

from bench._stampede import FLEET_WORKER, Stampede, measure, show, write

PEER_WORKER = (str(Path(__file__).with_name("_peer_worker.py")),)
CONTENDERS = {
    "naive": FLEET_WORKER,
    "atomcache": FLEET_WORKER,
    "cashews": PEER_WORKER,
    "fastapi-cache2": PEER_WORKER,
    "aiocache": PEER_WORKER,
    "litestar cache=": PEER_WORKER,
    "atomcache (litestar)": PEER_WORKER,
}


async def main() -> None:
    """Run every contender in turn and print their figures."""
    load = Stampede.from_arguments(__doc__.splitlines()[0])
    print(f"stampede against other caches: {load.describe()}")
    rows = []
    for strategy, worker in CONTENDERS.items():
        rows.append(await measure(strategy, load, worker))
        show(rows[-1])
    write("stampede_peers", rows)


if __name__ == "__main__":
    asyncio.run(main())
