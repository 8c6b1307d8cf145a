"""`@cached(refresh_ahead=True)` on Litestar: handlers of every kind kept warm."""

from __future__ import annotations

import asyncio
import time

import httpx
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


async def test_every_kind_of_handler_stays_warm(redis_url: str, namespace: str) -> None:
    """Over three TTLs every answer is a hit (none waits for a computation); each is renewed."""
    for name in runs:
        runs[name] = 0
    cache = Cache.from_url(redis_url, namespace=namespace)
    app = Litestar([warm_async, warm_thread, warm_sync], plugins=[AtomCachePlugin(cache)])
    async with serve_asgi(app) as base_url, httpx.AsyncClient(base_url=base_url) as client:
        for path in ("/async", "/thread", "/sync"):
            await client.get(path)
        started = time.monotonic()
        while time.monotonic() - started < 3 * TTL:
            for path in ("/async", "/thread", "/sync"):
                answer = await client.get(path)
                assert answer.headers["cache-status"].startswith("atomcache; hit"), path
            await asyncio.sleep(0.05)
    assert min(runs.values()) >= 1 + 3, runs
