"""Core benchmark: `await cache.get(key)` on a hit against redis-py's `GET` + `json.loads`.

One process, one throwaway `redis-server` (unless ATOMCACHE_REDIS_URL is set), one
event loop (asyncio's own). The same value is stored twice: under atomcache (its entry:
header, checksum, JSON) and, for the baseline, as the same JSON bytes under a plain key
read with redis-py's `await redis.get(key)` then `json.loads`, through a default client
(`Redis.from_url`, whose pool opens a connection whenever none is free). A second
baseline reads it through a client with the pool `Cache.from_url` uses (a
`BlockingConnectionPool` of 100 connections, a caller waiting up to 2 s for a free one
rather than opening more): the difference between the two baselines is that pool's
cost, the difference to the second is atomcache's own. The same `get` is also timed with
`OrjsonSerializer` and `MsgspecSerializer` (`ratio_to_default_serializer`: against
`JsonSerializer`'s), and on a value stored with two tags, whose read checks the tags'
stamps in the same `MGET`. Then 50 reads of different 8 KB values issued at once, atomcache's
(auto-pipelined) against redis-py's GETs, in reads per second (core_concurrent.json).
Two values: a small dict
and a ~8 KB list of 100 items. Each round times `--calls` sequential awaits of each
variant, in turn (the order alternates between rounds), so that whatever slows the
machine slows both; the figure is the median time per call over `--rounds` rounds, and
the ratio is atomcache's median over the baseline's. The rows go to
bench/results/core.json.

    python bench/core.py [--rounds 15] [--calls 1000]
"""

# ruff: noqa: E402 - the imports come after the sys.path fix below

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redis.asyncio import BlockingConnectionPool, Redis

BENCH = Path(__file__).resolve().parent
# bench/http.py would stand in for the standard library's `http` (see its header).
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH]
sys.path.insert(0, str(BENCH.parent / "tests"))

from atomcache_core import Cache, JsonSerializer, MsgspecSerializer, OrjsonSerializer
from support.redis_server import RedisServer

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

RESULTS = Path(__file__).with_name("results")
PAYLOADS: dict[str, Any] = {
    "small": {"id": 1, "name": "Ada", "active": True},
    "8 KB": [
        {
            "id": i,
            "name": f"item {i}",
            "sku": f"SKU-{i:06d}",
            "price": i * 1.25,
            "tags": ["red", "large"],
        }
        for i in range(100)
    ],
}
BASELINE = "redis-py GET + json.loads"
SAME_POOL = "the same, blocking pool"
ATOMCACHE = "atomcache get (hit)"
ORJSON = "atomcache get, OrjsonSerializer"
MSGSPEC = "atomcache get, MsgspecSerializer"
#: A value stored with tags: its read checks the tags' stamps, in the same MGET
#: (docs/reliability.md, "Invalidation is final").
TAGGED = "atomcache get, 2 tags"
POOL = {
    "max_connections": 100,
    "timeout": 2.0,
    "socket_timeout": 2.0,
    "socket_connect_timeout": 2.0,
}


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    """ATOMCACHE_REDIS_URL, else a throwaway server's URL."""
    if url := os.environ.get("ATOMCACHE_REDIS_URL"):
        yield url
        return
    with RedisServer() as server:
        yield server.url


async def per_call(read: Callable[[], Awaitable[Any]], calls: int) -> float:
    """Microseconds per call of `calls` sequential awaits of `read`."""
    started = time.perf_counter()
    for _ in range(calls):
        await read()
    return 1e6 * (time.perf_counter() - started) / calls


async def measure_payload(
    name: str,
    value: Any,
    caches: dict[str, Cache],
    redis: Redis,
    blocking: Redis,
    *,
    rounds: int,
    calls: int,
) -> list[dict[str, Any]]:
    """Every variant's rows for one value."""
    data = JsonSerializer().dumps(value)
    raw_key = f"bench-core-raw:{name}"
    for variant, cache in caches.items():
        await cache.set(name, value, ttl=3600, tags=("red", "large") if variant == TAGGED else ())
    await redis.set(raw_key, data, ex=3600)

    async def baseline() -> Any:
        return json.loads(await redis.get(raw_key))  # type: ignore[arg-type]

    async def same_pool() -> Any:
        return json.loads(await blocking.get(raw_key))  # type: ignore[arg-type]

    def reader(cache: Cache) -> Callable[[], Awaitable[Any]]:
        async def read() -> Any:
            return await cache.get(name)

        return read

    variants: dict[str, Callable[[], Awaitable[Any]]] = {
        BASELINE: baseline,
        SAME_POOL: same_pool,
    }
    variants.update({variant: reader(cache) for variant, cache in caches.items()})
    for variant, read in variants.items():
        if await read() != value:
            sys.exit(f"{variant} did not read the stored {name} value back")
        await per_call(read, calls)  # warm-up
    times: dict[str, list[float]] = {variant: [] for variant in variants}
    for round_number in range(rounds):
        turn = round_number % len(variants)
        order = list(variants)[turn:] + list(variants)[:turn]
        for variant in order:
            times[variant].append(await per_call(variants[variant], calls))
    base = statistics.median(times[BASELINE])
    same = statistics.median(times[SAME_POOL])
    default = statistics.median(times[ATOMCACHE])
    return [
        {
            "payload": name,
            "bytes": len(data),
            "variant": variant,
            "median_us": statistics.median(samples),
            "min_us": min(samples),
            "max_us": max(samples),
            "ratio_to_baseline": statistics.median(samples) / base,
            "ratio_to_same_pool": statistics.median(samples) / same,
            "ratio_to_default_serializer": statistics.median(samples) / default,
            "rounds": rounds,
            "calls_per_round": calls,
        }
        for variant, samples in times.items()
    ]


CONCURRENT = 50  # reads at once, of as many different keys


async def measure_concurrent(cache: Cache, redis: Redis, *, rounds: int) -> dict[str, Any]:
    """Reads per second of CONCURRENT reads of different 8 KB values, issued at once.

    atomcache's reads of one server are auto-pipelined (one GET, then one MGET for what
    queued meanwhile); the baseline is redis-py's GETs issued at once, each then
    `json.loads`.
    """
    value = PAYLOADS["8 KB"]
    data = JsonSerializer().dumps(value)
    keys = [f"bench-core-many:{number}" for number in range(CONCURRENT)]
    await cache.set_many(dict.fromkeys(keys, value), ttl=3600)
    for key in keys:
        await redis.set(key, data, ex=3600)

    async def atomcache() -> Any:
        return await asyncio.gather(*(cache.get(key) for key in keys))

    async def baseline() -> Any:
        async def one(key: str) -> Any:
            return json.loads(await redis.get(key))  # type: ignore[arg-type]

        return await asyncio.gather(*(one(key) for key in keys))

    variants = {"redis-py GETs at once + json.loads": baseline, "atomcache gets at once": atomcache}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for read in variants.values():
        await per_call(read, 20)  # warm-up
    for round_number in range(rounds):
        order = list(variants) if round_number % 2 == 0 else list(variants)[::-1]
        for name in order:
            times[name].append(await per_call(variants[name], 50))
    found = {name: CONCURRENT / statistics.median(samples) * 1e6 for name, samples in times.items()}
    base, ours = found.values()
    return {"reads_per_second": found, "ratio": ours / base, "concurrent": CONCURRENT}


async def main() -> None:
    """Measure both values and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=1000, help="sequential calls per round")
    args = parser.parse_args()
    print(f"core get: {args.rounds} rounds x {args.calls} sequential calls per variant")
    rows: list[dict[str, Any]] = []
    with redis_url() as url:
        redis = Redis.from_url(url)
        blocking = Redis.from_pool(BlockingConnectionPool.from_url(url, **POOL))
        caches = {
            ATOMCACHE: Cache.from_url(url, namespace="bench-core"),
            ORJSON: Cache.from_url(url, namespace="bench-core-o", serializer=OrjsonSerializer()),
            MSGSPEC: Cache.from_url(url, namespace="bench-core-m", serializer=MsgspecSerializer()),
            TAGGED: Cache.from_url(url, namespace="bench-core-t"),
        }
        for name, value in PAYLOADS.items():
            rows += await measure_payload(
                name, value, caches, redis, blocking, rounds=args.rounds, calls=args.calls
            )
        concurrent = await measure_concurrent(caches[ATOMCACHE], redis, rounds=args.rounds)
        for cache in caches.values():
            await cache.close()
        await redis.aclose()
        await blocking.aclose()
    for row in rows:
        print(
            f"{row['payload']:>5} ({row['bytes']:>5} bytes) {row['variant']:>33}: "
            f"{row['median_us']:6.1f} us per call (min {row['min_us']:.1f}, "
            f"max {row['max_us']:.1f}), x{row['ratio_to_baseline']:.2f}, "
            f"x{row['ratio_to_same_pool']:.2f} the blocking pool's, "
            f"x{row['ratio_to_default_serializer']:.2f} the default serializer's"
        )
    rates = ", ".join(
        f"{name} {rate:,.0f}/s" for name, rate in concurrent["reads_per_second"].items()
    )
    print(
        f"{CONCURRENT} reads at once of different 8 KB values: {rates}, x{concurrent['ratio']:.2f}"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "core.json").write_text(json.dumps(rows, indent=2) + "\n")
    (RESULTS / "core_concurrent.json").write_text(json.dumps(concurrent, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
