"""Fixtures for the core tests: a `Cache` on each backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from redis.asyncio import Redis

from atomcache_core import Cache
from support.redis_server import SERVER_URLS

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@pytest.fixture(params=["memory", "redis", "valkey"])
async def cache(request: pytest.FixtureRequest, namespace: str) -> AsyncIterator[Cache]:
    """A cache on the in-memory default, then on a real Redis, then on a real Valkey."""
    url = (
        "memory://"
        if request.param == "memory"
        else request.getfixturevalue(SERVER_URLS[request.param])
    )
    async with Cache.from_url(url, namespace=namespace) as cache:
        yield cache


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    """A plain redis-py client on the test server, to look at what atomcache wrote."""
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()
