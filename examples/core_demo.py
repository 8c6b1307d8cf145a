"""atomcache_core.Cache used directly, printing what it does.

Runs on the embedded in-memory default; set ATOMCACHE_REDIS_URL=redis://... to run the
same code against Redis.
"""

from __future__ import annotations

import asyncio
import os

from atomcache_core import Cache, SerializationError


async def main() -> None:
    """Walk through the data API."""
    url = os.environ.get("ATOMCACHE_REDIS_URL", "memory://")
    async with Cache.from_url(url, namespace="demo", ttl=60) as cache:
        print(f"using {cache!r} ({url})")

        await cache.set("user:1", {"name": "Ada", "langs": ["en", "fr"]}, tags=["users"])
        print("set user:1           ->", await cache.get("user:1"))
        print("ttl user:1           ->", round(await cache.ttl("user:1") or 0), "s left")

        await cache.set("nothing", None)
        print(
            "None is cacheable    ->",
            await cache.exists("nothing"),
            await cache.get("nothing", "?"),
        )

        await cache.set("flash", "gone soon", ttl=0.2)
        await asyncio.sleep(0.25)
        print("0.2 s TTL after 0.25 ->", await cache.get("flash", default="(expired)"))

        await cache.set_many({"a": 1, "b": 2}, ttl=30)
        print("get_many a, b, c     ->", await cache.get_many(["a", "b", "c"], default="-"))

        try:
            await cache.set("when", {1, 2, 3})
        except SerializationError as error:
            print("a set is not JSON    ->", str(error).split(";")[0])

        print("invalidate 'users'   ->", await cache.invalidate_tags("users"), "entry removed")
        print("clear the namespace  ->", await cache.clear(), "entries removed")
        print("stats                ->", cache.stats.as_dict())


if __name__ == "__main__":
    asyncio.run(main())
