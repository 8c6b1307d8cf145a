"""Waiting in tests for what a cache does in the background: its local tier, its waiters."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import pytest

from atomcache_core.backends.tiered import TieredStorage

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from redis.asyncio import Redis
    from redis.asyncio.client import Monitor

    from atomcache_core import Cache


async def until_serving(cache: Cache, timeout: float = 5.0) -> None:
    """Return once the cache's local tier answers hits (its invalidation channel is live)."""
    await cache.exists("start the tier")
    deadline = time.monotonic() + timeout
    while not tier(cache).serving:
        assert time.monotonic() < deadline, "the local tier never started serving"
        await asyncio.sleep(0.005)


def tier(cache: Cache) -> TieredStorage:
    """The cache's local tier."""
    assert isinstance(cache.storage, TieredStorage)
    return cache.storage


async def until(condition: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
    """Wait until `condition()` holds, at most `seconds`."""
    deadline = time.monotonic() + seconds
    while not await condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {seconds} s")
        await asyncio.sleep(0.02)


async def until_value(cache: Cache, key: str, expected: Any, timeout: float) -> float:
    """Seconds until `cache.get(key)` returns `expected`; fails after `timeout`."""
    started = time.monotonic()
    while await cache.get(key) != expected:
        assert time.monotonic() - started < timeout, f"{key!r} never became {expected!r}"
        await asyncio.sleep(0.001)
    return time.monotonic() - started


async def until_waiting(monitor: Monitor, waiter: Cache, key: str) -> None:
    """Return once the server has run `waiter`'s first look at `key` after subscribing.

    A waiter subscribes to the key's channel, then reads the value and tries the lock
    (`SET ... NX`); once that `SET` has run, a value stored later reaches the waiter
    only as a notification. Redis tells no one else when it happens, so this follows
    the server's MONITOR stream of commands.
    """
    channel, lock = waiter.keys.channel(key), waiter.keys.lock(key)
    subscribed = False
    async for command in monitor.listen():
        name, *arguments = command["command"].split(" ")
        if name.upper() == "SUBSCRIBE" and channel in arguments:
            subscribed = True
        elif subscribed and name.upper() == "SET" and arguments[:1] == [lock]:
            return


async def compute_with_a_notified_waiter(
    leader: Cache, waiter: Cache, admin: Redis, key: str = "flight"
) -> None:
    """`leader` computes `key`; `waiter` asks meanwhile, waits and is woken by "stored"."""
    calls = 0
    started, release = asyncio.Event(), asyncio.Event()
    before = waiter.stats.waits, waiter.stats.wakeups_notified, waiter.stats.wakeups_rechecked

    async def compute() -> str:
        nonlocal calls
        calls += 1
        started.set()
        await release.wait()
        return "computed"

    leading = asyncio.create_task(leader.get_or_set(key, compute))
    await started.wait()
    async with admin.monitor() as monitor:
        waiting = asyncio.create_task(waiter.get_or_set(key, compute))
        await asyncio.wait_for(until_waiting(monitor, waiter, key), timeout=10)
    release.set()
    assert await leading == "computed"
    assert await waiting == "computed"
    assert calls == 1
    after = waiter.stats.waits, waiter.stats.wakeups_notified, waiter.stats.wakeups_rechecked
    assert [now - then for now, then in zip(after, before, strict=True)] == [1, 1, 0]
