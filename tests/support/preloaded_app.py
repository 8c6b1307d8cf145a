"""A plain ASGI app whose cache is built at import, before gunicorn `--preload` forks workers.

Configured by environment: ATOMCACHE_REDIS_URL, ATOMCACHE_NAMESPACE. Every response is
JSON and names the worker (`pid`):

- `GET /value`: `{"value": ..., "local": true}` when the value came from this worker's
  local tier (its hit counter moved), `"serving"` whether that tier answers hits yet;
- `PUT /value?v=V&tag=T`: stores V under the one key, tagged T;
- `DELETE /value`: deletes the key;
- `POST /invalidate?tag=T`: invalidates the tag.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import parse_qs

from atomcache_core import Cache
from atomcache_core.backends.tiered import TieredStorage

KEY = "value"

cache = Cache.from_url(
    os.environ["ATOMCACHE_REDIS_URL"],
    namespace=os.environ["ATOMCACHE_NAMESPACE"],
    local_ttl=60,
    observers=(),
)
assert isinstance(cache.storage, TieredStorage)
tier = cache.storage


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer the four requests above; close the cache at shutdown."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        await cache.close()
        await send({"type": "lifespan.shutdown.complete"})
        return
    query = {name: values[0] for name, values in parse_qs(scope["query_string"].decode()).items()}
    answer: dict[str, Any] = {"pid": os.getpid()}
    method = scope["method"]
    if method == "GET":
        hits = tier.hits
        answer["value"] = await cache.get(KEY)
        answer["local"] = tier.hits > hits
        answer["serving"] = tier.serving
    elif method == "PUT":
        await cache.set(KEY, query["v"], ttl=60, tags=[query["tag"]])
    elif method == "DELETE":
        answer["deleted"] = await cache.delete(KEY)
    else:
        answer["removed"] = await cache.invalidate_tags(query["tag"])
    body = json.dumps(answer).encode()
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
