"""Cancelling cache calls anywhere (client disconnects) corrupts nothing."""

from __future__ import annotations

import asyncio
import functools
import random
import time
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from atomcache_core import Cache

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

ROUNDS = 1000


async def test_random_cancellations_leave_no_stuck_lock_nor_wrong_value(
    redis_url: str, namespace: str
) -> None:
    """1,000 calls cancelled at random points: no lock without TTL, no value of another key."""
    randomness = random.Random(20261122)  # noqa: S311 - reproducible test schedule
    cache = Cache.from_url(redis_url, namespace=namespace, wait_timeout=2.0, recheck_interval=0.2)
    control = Redis.from_url(redis_url)

    async def value_of(key: str) -> dict[str, str]:
        await asyncio.sleep(randomness.random() * 0.002)
        return {"key": key}

    def factory(key: str) -> Callable[[], Awaitable[dict[str, str]]]:
        return functools.partial(value_of, key)

    try:
        for _ in range(ROUNDS):
            key = f"k{randomness.randrange(50)}"
            call = asyncio.create_task(
                cache.get_or_set(key, factory(key)) if randomness.random() < 0.7 else cache.get(key)
            )
            await asyncio.sleep(randomness.random() * 0.003)
            call.cancel()
            await asyncio.gather(call, return_exceptions=True)
        started = time.monotonic()
        for index in range(50):
            key = f"k{index}"
            assert await cache.get_or_set(key, factory(key)) == {"key": key}
            assert await cache.get(key) in (None, {"key": key})
        assert time.monotonic() - started < 2.0 + 50 * 0.1  # nobody waited on a dead lock
        async for lock in control.scan_iter(match=f"atomcache:{namespace}:l:*"):
            assert await control.pttl(lock) > 0, lock
    finally:
        await cache.close()
        await control.aclose()
