"""A Litestar app for the fleet test: one slow cached route, computations counted in Redis.

Configured by environment: ATOMCACHE_REDIS_URL, ATOMCACHE_NAMESPACE.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from litestar import Litestar, get
from litestar.params import FromPath, FromQuery  # noqa: TC002 - Litestar reads annotations at run time
from redis.asyncio import Redis

from atomcache_core import Cache
from atomcache_litestar import AtomCachePlugin, cached

URL = os.environ["ATOMCACHE_REDIS_URL"]
NAMESPACE = os.environ["ATOMCACHE_NAMESPACE"]
counter = Redis.from_url(URL)


@get("/report/{year:int}")
@cached(ttl=60)
async def report(year: FromPath[int], detail: FromQuery[bool] = False) -> dict[str, Any]:  # noqa: FBT002 - a query parameter
    """A slow computation: counted fleet-wide, then half a second of work."""
    run = await counter.incr(f"{NAMESPACE}:computations")
    await asyncio.sleep(0.5)
    return {"year": year, "detail": detail, "run": run, "pid": os.getpid()}


app = Litestar([report], plugins=[AtomCachePlugin(Cache.from_url(URL, namespace=NAMESPACE))])
