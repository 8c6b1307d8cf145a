"""A FastAPI app for the fleet test: one slow cached route, computations counted in Redis.

Configured by environment: ATOMCACHE_REDIS_URL, ATOMCACHE_NAMESPACE.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from fastapi import FastAPI
from redis.asyncio import Redis

from atomcache_core import Cache
from atomcache_fastapi import cached, setup_cache

URL = os.environ["ATOMCACHE_REDIS_URL"]
NAMESPACE = os.environ["ATOMCACHE_NAMESPACE"]

app = FastAPI()
setup_cache(app, Cache.from_url(URL, namespace=NAMESPACE))
counter = Redis.from_url(URL)


@app.get("/report/{year}")
@cached(ttl=60)
async def report(year: int, *, detail: bool = False) -> dict[str, Any]:
    """A slow computation: counted fleet-wide, then half a second of work."""
    run = await counter.incr(f"{NAMESPACE}:computations")
    await asyncio.sleep(0.5)
    return {"year": year, "detail": detail, "run": run, "pid": os.getpid()}
