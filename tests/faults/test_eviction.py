"""A Redis that evicts: `maxmemory` with each policy, and other keys written all along.

Under `allkeys-lru` (a managed service's usual setting) Redis evicts what was used least
recently: tag bookkeeping, written once, goes before the entries it lists, which are
read all the time, and a lock goes in the middle of its computation. Neither may make
the cache serve an invalidated entry, nor throw a computation away.

Redis's LRU clock counts whole seconds, so "least recently used" only shows after a
second or more: the policies run side by side, each on a server of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from typing import TYPE_CHECKING

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from atomcache_core import Cache
from support.redis_server import RedisServer

if TYPE_CHECKING:
    import pytest

EVICTING = ("allkeys-lru", "allkeys-lfu", "volatile-lru")
#: Room for about 300 of the churn's values.
MAXMEMORY = "4mb"
CHURN_VALUE = os.urandom(10_000)


async def churn(url: str, stop: asyncio.Event, per_second: float) -> None:
    """Write new 10 KB keys (with a TTL, for `volatile-*`) at this rate until `stop`."""
    written = 0
    async with Redis.from_url(url) as client:
        while not stop.is_set():
            async with client.pipeline(transaction=False) as pipe:
                for _ in range(5):
                    pipe.set(f"churn:{written}", CHURN_VALUE, px=600_000)
                    written += 1
                with contextlib.suppress(ResponseError):  # noeviction: out of memory
                    await pipe.execute()
            await asyncio.sleep(5 / per_second)


async def evicted(url: str) -> int:
    """How many keys the server evicted so far."""
    async with Redis.from_url(url) as client:
        return int((await client.info("stats"))["evicted_keys"])


async def invalidate_under_eviction(policy: str, url: str) -> str:
    """Hot tagged entries, idle tag bookkeeping, churn; then `invalidate_tags`.

    Returns what went wrong, or "" when nothing did.
    """
    keys = [f"k{number}" for number in range(20)]
    async with Cache.from_url(url, namespace="app", observers=()) as cache:
        for number, key in enumerate(keys):
            await cache.set(key, number, tags=["t"], ttl=600)
        stop = asyncio.Event()
        writer = asyncio.create_task(churn(url, stop, per_second=250))
        for _ in range(150):  # the entries are read all the time: they stay
            await cache.get_many(keys)
            await asyncio.sleep(0.02)
        stop.set()
        await writer
        alive = [value for value in await cache.get_many(keys) if value is not None]
        if len(alive) < 10:
            return f"{policy}: too few entries outlived the churn to test: {alive}"
        if policy != "noeviction" and await evicted(url) < 100:
            return f"{policy}: the churn evicted too little to test"
        await cache.invalidate_tags("t")
        served = [value for value in await cache.get_many(keys) if value is not None]
        return f"{policy}: invalidated entries still served: {served}" if served else ""


async def test_invalidated_tags_stay_invalidated_under_eviction() -> None:
    """Under each policy, no entry tagged `t` is served after `invalidate_tags("t")`."""
    policies = (*EVICTING, "noeviction")
    with contextlib.ExitStack() as stack:
        servers = [
            stack.enter_context(RedisServer("--maxmemory", MAXMEMORY, "--maxmemory-policy", policy))
            for policy in policies
        ]
        faults = await asyncio.gather(
            *(
                invalidate_under_eviction(policy, server.url)
                for policy, server in zip(policies, servers, strict=True)
            )
        )
    assert [fault for fault in faults if fault] == []


async def compute_under_eviction(policy: str, url: str) -> tuple[list[str], int]:
    """Ten cold keys computed for 1.5 s each under churn: the values, and the computations."""
    keys = [f"cold{number}" for number in range(10)]
    async with Cache.from_url(url, namespace="app", observers=()) as cache:
        stop = asyncio.Event()
        writer = asyncio.create_task(churn(url, stop, per_second=400))
        await asyncio.sleep(1.0)  # memory is full: every write evicts

        async def compute(key: str) -> str:
            await asyncio.sleep(1.5)  # longer than an idle key lives here
            return key.upper()

        values = await asyncio.gather(
            *(cache.get_or_set(key, functools.partial(compute, key), tags=["t"]) for key in keys)
        )
        stop.set()
        await writer
        stored = await cache.get_many(keys)
        if await evicted(url) < 100:
            return [f"{policy}: the churn evicted too little to test"], 0
        return [
            f"{policy}: {key} {value!r} stored as {found!r}"
            for key, value, found in zip(keys, values, stored, strict=True)
            if value != key.upper() or found not in (None, value)
        ], cache.stats.computations


async def test_computations_outlive_the_eviction_of_their_locks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every computation of a cold key stores its value, once, while its lock is evicted."""
    with contextlib.ExitStack() as stack:
        servers = [
            stack.enter_context(RedisServer("--maxmemory", MAXMEMORY, "--maxmemory-policy", policy))
            for policy in EVICTING
        ]
        with caplog.at_level(logging.INFO, logger="atomcache"):
            found = await asyncio.gather(
                *(
                    compute_under_eviction(policy, server.url)
                    for policy, server in zip(EVICTING, servers, strict=True)
                )
            )
    assert [fault for faults, _ in found for fault in faults] == []
    assert [computations for _, computations in found] == [10] * len(EVICTING)
    assert "not stored" not in caplog.text
