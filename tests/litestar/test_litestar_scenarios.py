"""The shared HTTP scenarios (HTTP.md) against the Litestar adapter, on a real server."""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from litestar_app import build_app

from atomcache_core import Cache
from http_scenarios import SCENARIOS, Harness, redis_down_fails_open
from support.redis_server import RedisServer
from support.servers import serve_asgi

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable


@contextlib.asynccontextmanager
async def running(cache: Cache) -> AsyncIterator[Harness]:
    """The scenario app on `cache`, served by uvicorn, with a client and its counters."""
    calls: Counter[str] = Counter()
    flags: dict[str, Any] = {}
    app, plugin = build_app(cache, calls, flags)
    async with (
        serve_asgi(app) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=30) as client,
    ):
        yield Harness(client, cache, plugin.invalidate, calls, flags)


@pytest.fixture(params=["memory", "redis"])
async def harness(request: pytest.FixtureRequest, namespace: str) -> AsyncIterator[Harness]:
    """The app on the in-memory cache, then on a real Redis."""
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    async with running(Cache.from_url(url, namespace=namespace)) as harness:
        yield harness


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda scenario: scenario.__name__)
async def test_http_behaviour(
    harness: Harness, scenario: Callable[[Harness], Awaitable[None]]
) -> None:
    """Each behaviour of HTTP.md holds for Litestar (the scenario's docstring says which)."""
    await scenario(harness)


async def test_redis_down_fails_open(namespace: str) -> None:
    """With Redis gone, cached routes are answered by their handler, never a 500."""
    with RedisServer() as server:
        url = server.url
    cache = Cache.from_url(url, namespace=namespace, socket_connect_timeout=0.2)
    async with running(cache) as harness:
        await redis_down_fails_open(harness)
