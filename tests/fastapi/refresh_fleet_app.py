"""A FastAPI app for the refresh-ahead fleet test: four routes kept warm, runs counted.

`@cached(refresh_ahead=True)` and the original's `ResponseCache(auto_refresh=True)`, each
on an `async def` and a `def` endpoint; every run counts itself in Redis under
`<namespace>:runs:<route>` and works for `WORK` seconds. Configured by environment:
ATOMCACHE_REDIS_URL, ATOMCACHE_NAMESPACE.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Annotated

from fastapi import Depends, FastAPI
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from atomcache_core import Cache
from atomcache_fastapi import ResponseCache, cached, setup_cache

URL = os.environ["ATOMCACHE_REDIS_URL"]
NAMESPACE = os.environ["ATOMCACHE_NAMESPACE"]
TTL = 3
WORK = 0.3

app = FastAPI()
setup_cache(app, Cache.from_url(URL, namespace=NAMESPACE))
counter = Redis.from_url(URL)
sync_counter = SyncRedis.from_url(URL)


@app.get("/cached-async")
@cached(ttl=TTL, refresh_ahead=True)
async def cached_async() -> int:
    """Kept warm by @cached; runs in the event loop."""
    run = await counter.incr(f"{NAMESPACE}:runs:cached-async")
    await asyncio.sleep(WORK)
    return int(run)


@app.get("/cached-sync")
@cached(ttl=TTL, refresh_ahead=True)
def cached_sync() -> int:
    """Kept warm by @cached; runs in FastAPI's thread pool."""
    run = sync_counter.incr(f"{NAMESPACE}:runs:cached-sync")
    time.sleep(WORK)
    return int(run)


@app.get("/legacy-async")
async def legacy_async(
    cache: Annotated[ResponseCache, Depends(ResponseCache(exp=TTL, auto_refresh=True))],
) -> int:
    """Kept warm by the original's auto_refresh."""
    await cache.raise_try()
    run = await counter.incr(f"{NAMESPACE}:runs:legacy-async")
    await asyncio.sleep(WORK)
    return cache.set(int(run))


@app.get("/legacy-sync")
def legacy_sync(
    cache: Annotated[ResponseCache, Depends(ResponseCache(exp=TTL, auto_refresh=True))],
) -> int:
    """The original's auto_refresh on a plain def endpoint (the dependency asks the cache)."""
    run = sync_counter.incr(f"{NAMESPACE}:runs:legacy-sync")
    time.sleep(WORK)
    return cache.set(int(run))
