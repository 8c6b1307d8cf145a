"""A FastAPI app with a cached route: `uvicorn fastapi_example:app` (from examples/).

Runs on the in-memory cache, or on Redis when ATOMCACHE_REDIS_URL is set.
"""

from __future__ import annotations

import asyncio
import logging
import os

from fastapi import FastAPI
from pydantic import BaseModel

from atomcache_core import Cache
from atomcache_fastapi import cached, setup_cache

logger = logging.getLogger(__name__)  # says when the handler really runs


class Product(BaseModel):
    """A product as clients see it."""

    id: int
    name: str


app = FastAPI()
setup_cache(
    app,
    Cache.from_url(os.environ.get("ATOMCACHE_REDIS_URL", "memory://"), namespace="shop-fastapi"),
)


@app.get("/products")
@cached(ttl=60)
async def products(offset: int = 0, limit: int = 3) -> list[Product]:
    """A slow listing: computed once per parameters, then served from the cache."""
    logger.info("computing products %d..%d", offset, offset + limit - 1)
    await asyncio.sleep(0.2)
    return [Product(id=i, name=f"product {i}") for i in range(offset, offset + limit)]
