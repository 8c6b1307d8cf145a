"""Automatic pipelining of reads on one Redis server, counted by the server itself."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from redis.asyncio import Redis

from atomcache_core import BackendError, Cache
from support.redis_server import RedisServer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@pytest.fixture
async def server() -> AsyncIterator[RedisServer]:
    """A Redis of the test's own, whose command counts nobody else moves."""
    with RedisServer() as started:
        yield started


async def reads_sent(server: RedisServer) -> dict[str, int]:
    """How many GET and MGET commands the server has run (INFO commandstats)."""
    async with Redis.from_url(server.url) as admin:
        stats = await admin.info("commandstats")
    return {name: int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("get", "mget")}


async def reset(server: RedisServer) -> None:
    """Zero the server's command counts."""
    async with Redis.from_url(server.url) as admin:
        await admin.config_resetstat()


async def test_concurrent_reads_of_different_keys_share_round_trips(server: RedisServer) -> None:
    """50 reads at once: the first goes alone, the 49 issued in its turn as one MGET."""
    async with Cache.from_url(server.url, observers=()) as cache:
        await cache.set_many({f"k{n}": n for n in range(50)})
        await reset(server)
        values = await asyncio.gather(*(cache.get(f"k{n}") for n in range(50)))
        assert values == list(range(50))
        assert await reads_sent(server) == {"get": 1, "mget": 1}


async def test_reads_one_after_another_go_alone(server: RedisServer) -> None:
    """Sequential reads wait for nothing: one GET each, no MGET."""
    async with Cache.from_url(server.url, observers=()) as cache:
        await cache.set("k", 1)
        await reset(server)
        for _ in range(5):
            assert await cache.get("k") == 1
        assert await reads_sent(server) == {"get": 5, "mget": 0}


async def test_a_cancelled_read_leaves_its_batch_intact(server: RedisServer) -> None:
    """A joined caller cancelled, or the sender itself: the others get their values."""
    async with Cache.from_url(server.url, observers=()) as cache:
        await cache.set_many({"a": "A", "b": "B", "c": "C"})
        reads = [asyncio.ensure_future(cache.get(key)) for key in ("a", "b", "c")]
        await asyncio.sleep(0)  # "a" goes alone; "b" sends a batch that "c" joined
        reads[2].cancel()
        assert [await read for read in reads[:2]] == ["A", "B"]
        with pytest.raises(asyncio.CancelledError):
            await reads[2]
        reads = [asyncio.ensure_future(cache.get(key)) for key in ("a", "b", "c")]
        await asyncio.sleep(0)
        reads[1].cancel()  # the batch's sender: the batch goes again for "c"
        assert [await reads[0], await reads[2]] == ["A", "C"]
        with pytest.raises(asyncio.CancelledError):
            await reads[1]


async def test_a_failed_batch_fails_each_of_its_reads_with_backend_error() -> None:
    """Redis gone mid-flight: every read of the batch raises BackendError, none hangs."""
    server = RedisServer()
    try:
        async with Cache.from_url(server.url, observers=(), socket_timeout=0.5) as cache:
            await cache.set_many({f"k{n}": n for n in range(5)})
            server.pause()  # the batch in flight gets no answer
            storage = cache.storage
            reads = [
                asyncio.ensure_future(storage.get(cache.keys.value(f"k{n}"))) for n in range(5)
            ]
            await asyncio.sleep(0.1)
            server.kill()
            outcomes = await asyncio.wait_for(
                asyncio.gather(*reads, return_exceptions=True), timeout=10
            )
            assert all(isinstance(outcome, BackendError) for outcome in outcomes), outcomes
    finally:
        server.stop()
