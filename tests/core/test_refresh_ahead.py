"""Refresh ahead: entries renewed shortly before they expire, readers never waiting."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from atomcache_core import Cache
from atomcache_core._refresh import lead_time
from support.redis_server import SERVER_URLS

TTL = 1.0
WORK = 0.15  # seconds each computation takes


class Source:
    """A slow factory that counts its runs and returns the run's number."""

    def __init__(self) -> None:
        """No run yet."""
        self.runs = 0

    async def __call__(self) -> int:
        """Count the run, work, return its number."""
        self.runs += 1
        run = self.runs
        await asyncio.sleep(WORK)
        return run


async def read_for(caches: list[Cache], source: Source, seconds: float) -> None:
    """Read the key from each cache in turn every 0.1 s; every read must be a hit.

    A hit is a read answered by a fresh entry (`stats.hits`): one that waited for a
    computation, or made one, is not.
    """
    reads = 0
    hits_before = sum(cache.stats.hits for cache in caches)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await caches[reads % len(caches)].get_or_set("k", source, ttl=TTL, refresh_ahead=True)
        reads += 1
        await asyncio.sleep(0.1)
    assert sum(cache.stats.hits for cache in caches) - hits_before == reads


async def test_an_entry_read_steadily_stays_warm_across_expiries(cache: Cache) -> None:
    """Over three TTLs every read is a hit (none waits for a computation)."""
    source = Source()
    await cache.get_or_set("k", source, ttl=TTL, refresh_ahead=True)  # the cold fill
    await read_for([cache], source, 3 * TTL)
    renewals = source.runs - 1
    interval = TTL - lead_time(TTL)
    assert 3 <= renewals <= math.ceil(3 * TTL / interval) + 1
    assert await cache.get("k") in (source.runs, source.runs - 1)  # one may be under way


@pytest.mark.parametrize("server", ["redis", "valkey"])
async def test_a_fleet_renews_each_expiry_once(
    request: pytest.FixtureRequest, server: str, namespace: str
) -> None:
    """Three instances keeping one entry warm renew it once per expiry between them."""
    url = request.getfixturevalue(SERVER_URLS[server])
    caches = [Cache.from_url(url, namespace=namespace) for _ in range(3)]
    source = Source()
    try:
        await caches[0].get_or_set("k", source, ttl=TTL, refresh_ahead=True)
        await read_for(caches, source, 3 * TTL)
        interval = TTL - lead_time(TTL)
        assert 2 <= source.runs - 1 <= math.ceil(3 * TTL / interval) + 1
    finally:
        for cache in caches:
            await cache.close()


async def test_an_idle_entry_is_left_to_expire() -> None:
    """Without reads for refresh_idle seconds, renewals stop and the entry expires."""
    cache = Cache()
    source = Source()
    await cache.get_or_set("k", source, ttl=TTL, refresh_ahead=True, refresh_idle=0.5)
    await asyncio.sleep(3 * TTL)
    assert source.runs <= 2
    assert len(cache.refresher) == 0
    assert await cache.get("k") is None


async def test_the_default_idle_period_is_five_ttls() -> None:
    """refresh_idle defaults to 5 x TTL: idle entries stop being renewed after that."""
    cache = Cache()
    source = Source()
    await cache.get_or_set("k", source, ttl=0.4, refresh_ahead=True)
    await asyncio.sleep(0.4 * 5 + 1.5)
    runs = source.runs
    await asyncio.sleep(1.0)
    assert source.runs == runs
    assert 3 <= runs <= 12
    await cache.close()


async def test_closing_the_cache_stops_the_renewals() -> None:
    """After close, nothing is recomputed."""
    cache = Cache()
    source = Source()
    await cache.get_or_set("k", source, ttl=TTL, refresh_ahead=True)
    await cache.close()
    await asyncio.sleep(TTL)
    assert source.runs == 1
    assert len(cache.refresher) == 0


async def test_cached_functions_refresh_ahead(cache: Cache) -> None:
    """@cache.cached(refresh_ahead=True) keeps each argument's entry warm."""
    runs = 0

    @cache.cached(ttl=TTL, refresh_ahead=True)
    async def square(number: int) -> int:
        nonlocal runs
        runs += 1
        await asyncio.sleep(WORK)
        return number * number

    assert await square(3) == 9
    deadline = time.monotonic() + 2 * TTL
    while time.monotonic() < deadline:
        started = time.monotonic()
        assert await square(3) == 9
        assert time.monotonic() - started < WORK / 2
        await asyncio.sleep(0.1)
    assert runs >= 2
