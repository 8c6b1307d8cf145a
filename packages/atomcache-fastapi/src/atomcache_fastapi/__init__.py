"""FastAPI adapter for atomcache: cached routes with ETags, 304 and single flight.

```python
from fastapi import FastAPI
from atomcache_core import Cache
from atomcache_fastapi import cached, setup_cache

app = FastAPI()
setup_cache(app, Cache.from_url("redis://localhost:6379/0"))

@app.get("/items")
@cached(ttl=600)
async def items(offset: int = 0, limit: int = 10) -> list[dict[str, int]]:
    return [{"id": i} for i in range(offset, offset + limit)]
```
"""

from atomcache_fastapi._claims import CachedResponse
from atomcache_fastapi._middleware import (
    AtomCacheMiddleware,
    cached,
    get_cache,
    invalidate,
    setup_cache,
)
from atomcache_fastapi._migration import ResponseCache

__all__ = [
    "AtomCacheMiddleware",
    "CachedResponse",
    "ResponseCache",
    "cached",
    "get_cache",
    "invalidate",
    "setup_cache",
]
