"""`@cached(refresh_ahead=True)` on Litestar: handlers of every kind kept warm."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from litestar import Litestar, get

from atomcache_core import Cache
from atomcache_litestar import AtomCachePlugin, cached
from support.servers import serve_asgi

TTL, WORK = 1.5, 0.2
runs = {"async": 0, "thread": 0, "sync": 0}


@get("/async")
@cached(ttl=TTL, refresh_ahead=True)
async def warm_async() -> int:
    """Runs in the event loop."""
    runs["async"] += 1
    await asyncio.sleep(WORK)
    return runs["async"]


@get("/thread", sync_to_thread=True)
@cached(ttl=TTL, refresh_ahead=True)
def warm_thread() -> int:
    """Runs in a worker thread."""
    runs["thread"] += 1
    time.sleep(WORK)
    return runs["thread"]


@get("/sync", sync_to_thread=False)
@cached(ttl=TTL, refresh_ahead=True)
def warm_sync() -> int:
    """Runs in the event loop, without a thread."""
    runs["sync"] += 1
    return runs["sync"]


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_every_kind_of_handler_stays_warm(
    request: pytest.FixtureRequest, backend: str, namespace: str
) -> None:
    """Over three TTLs every answer is a hit that waits for nothing; each is renewed."""
    for name in runs:
        runs[name] = 0
    url = "memory://" if backend == "memory" else request.getfixturevalue("redis_url")
    cache = Cache.from_url(url, namespace=namespace)
    app = Litestar([warm_async, warm_thread, warm_sync], plugins=[AtomCachePlugin(cache)])
    async with serve_asgi(app) as base_url, httpx.AsyncClient(base_url=base_url) as client:
        for path in ("/async", "/thread", "/sync"):
            await client.get(path)
        slowest = 0.0
        started = time.monotonic()
        while time.monotonic() - started < 3 * TTL:
            for path in ("/async", "/thread", "/sync"):
                before = time.monotonic()
                answer = await client.get(path)
                slowest = max(slowest, time.monotonic() - before)
                assert answer.headers["cache-status"].startswith("atomcache; hit"), path
            await asyncio.sleep(0.05)
    assert slowest < WORK, f"a request waited {slowest:.3f} s"
    assert min(runs.values()) >= 1 + 3, runs
