"""Litestar adapter for atomcache: cached routes with ETags, 304 and single flight.

```python
from litestar import Litestar, get
from atomcache_core import Cache
from atomcache_litestar import AtomCachePlugin, cached

@get("/items")
@cached(ttl=600)
async def items(offset: int = 0, limit: int = 10) -> list[dict[str, int]]:
    return [{"id": i} for i in range(offset, offset + limit)]

app = Litestar([items], plugins=[AtomCachePlugin(Cache.from_url("redis://localhost:6379/0"))])
```
"""

from atomcache_core.asgi import cached
from atomcache_litestar._plugin import AtomCachePlugin

__all__ = ["AtomCachePlugin", "cached"]
