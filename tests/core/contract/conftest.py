"""One contract suite, every implementation: the `backends` fixture runs each test twice."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from redis.asyncio import Redis

from atomcache_core import (
    MemoryLockBackend,
    MemoryNotifier,
    MemoryStorage,
    RedisLockBackend,
    RedisNotifier,
    RedisStorage,
)
from atomcache_core.keys import KeyBuilder
from support.backends import Backends

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@pytest.fixture(params=["memory", "redis"])
async def backends(request: pytest.FixtureRequest, namespace: str) -> AsyncIterator[Backends]:
    """The memory backends, then the Redis backends on a real server."""
    keys = KeyBuilder(namespace)
    if request.param == "memory":
        storage = MemoryStorage()
        yield Backends("memory", storage, MemoryLockBackend(storage), MemoryNotifier(), keys)
        return
    client = Redis.from_url(request.getfixturevalue("redis_url"))
    notifier = RedisNotifier(client)
    try:
        yield Backends(
            "redis", RedisStorage(client), RedisLockBackend(client), notifier, keys, client
        )
    finally:
        await notifier.close()
        await client.aclose()
