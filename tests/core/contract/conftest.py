"""One contract suite, every implementation: the `backends` fixture runs each test on each.

Memory, Redis, Valkey, a Redis Cluster and Redis behind Sentinel; a new backend adds a
parameter and a branch here, and a session fixture in tests/conftest.py that starts a
real server of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from atomcache_core import (
    MemoryLockBackend,
    MemoryNotifier,
    MemoryStorage,
    RedisLockBackend,
    RedisNotifier,
    RedisStorage,
    TieredStorage,
)
from atomcache_core.keys import KeyBuilder
from support.backends import Backends
from support.fleet import controlling

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


URLS = {
    "redis": "redis_url",
    "redis + local tier": "redis_url",
    "valkey": "valkey_url",
    "cluster": "cluster_url",
    "sentinel": "sentinel_url",
}


@pytest.fixture(params=["memory", "redis", "redis + local tier", "valkey", "cluster", "sentinel"])
async def backends(request: pytest.FixtureRequest, namespace: str) -> AsyncIterator[Backends]:
    """The memory backends, then the Redis ones: server, Valkey, cluster, Sentinel.

    The server's also behind a local tier (`TieredStorage`): it keeps the contract too.
    """
    keys = KeyBuilder(namespace)
    if request.param == "memory":
        storage = MemoryStorage()
        yield Backends("memory", storage, MemoryLockBackend(storage), MemoryNotifier(), keys)
        return
    async with controlling(request.getfixturevalue(URLS[request.param])) as client:
        notifier = RedisNotifier(client)
        shared = RedisStorage(client)
        tier = None
        if request.param == "redis + local tier":
            tier = TieredStorage(shared, notifier, keys.invalidations, ttl=5.0)
        try:
            yield Backends(request.param, tier or shared, RedisLockBackend(client), notifier, keys)
        finally:
            if tier is not None:
                await tier.stop()
            await notifier.close()
