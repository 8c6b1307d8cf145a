"""A Litestar app with a cached route: `uvicorn litestar_example:app` (from examples/).

Runs on the in-memory cache, or on Redis when ATOMCACHE_REDIS_URL is set.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass

from litestar import Litestar, get
from litestar.params import FromQuery  # noqa: TC002 - Litestar reads annotations at run time

from atomcache_core import Cache
from atomcache_litestar import AtomCachePlugin, cached

logger = logging.getLogger(__name__)  # says when the handler really runs


@dataclass
class Product:
    """A product as clients see it."""

    id: int
    name: str


@get("/products")
@cached(ttl=60)
async def products(offset: FromQuery[int] = 0, limit: FromQuery[int] = 3) -> list[Product]:
    """A slow listing: computed once per parameters, then served from the cache."""
    logger.info("computing products %d..%d", offset, offset + limit - 1)
    await asyncio.sleep(0.2)
    return [Product(id=i, name=f"product {i}") for i in range(offset, offset + limit)]


cache = Cache.from_url(
    os.environ.get("ATOMCACHE_REDIS_URL", "memory://"), namespace="shop-litestar"
)
app = Litestar([products], plugins=[AtomCachePlugin(cache)])
