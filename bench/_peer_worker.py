"""One process of bench/peers.py: C concurrent calls of one cold key through another cache.

Started by tests/support/fleet.py (`Fleet(worker=...)`) with the fleet's JSON config,
whose `strategy` names the contender. It speaks the fleet worker's protocol and calls
its factory (`support.fleet_worker`), so that only the cache in front of the factory
differs from bench/stampede.py. Each contender is set up as its documentation shows,
on the fleet's Redis, with a 60 s TTL and its defaults otherwise:

- `cashews`: `cache.setup(url)`, then `@cache(ttl=60, lock=True)`;
- `fastapi-cache2`: `FastAPICache.init(RedisBackend(redis))`, then `@cache(expire=60)`
  (it has no lock);
- `aiocache`: `@cached_stampede(ttl=60, cache=RedisCache, ...)`, its lease 2 s;
- `litestar cache=`: a Litestar app with `@get("/cold", cache=60)` and its response
  cache on a `RedisStore`; the response cache exists only around a route handler, so
  the callers send their requests to the app's ASGI interface in this process
  (`httpx.ASGITransport`, no sockets);
- `atomcache (litestar)`: the same app and the same requests, with `@cached(ttl=60)`
  and `AtomCachePlugin`, so that the HTTP layer's cost is the same on both sides.

    python bench/_peer_worker.py '<the fleet config as JSON>'
"""

# ruff: noqa: E402 - the imports come after the sys.path fix below

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
# bench/http.py would stand in for the standard library's `http` (see its header).
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH]

import asyncio
import contextlib
import json
import logging
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
from litestar import Litestar, get
from litestar.config.response_cache import ResponseCacheConfig
from litestar.stores.redis import RedisStore
from redis.asyncio import Redis

from atomcache_core import Cache
from atomcache_litestar import AtomCachePlugin, cached
from support.fleet_worker import make_factory, run_callers

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from contextlib import AbstractAsyncContextManager

    Call = Callable[[], Awaitable[Any]]
    Factory = Callable[[], Awaitable[dict[str, Any]]]

TTL = 60
COLD = "/cold"
PING = "/ping"
STORE = "response_cache"


@contextlib.asynccontextmanager
async def serving(
    call: Call, warm_up: Callable[[], Awaitable[object]], close: Callable[[], Awaitable[object]]
) -> AsyncIterator[Call]:
    """Yield `call` once `warm_up` has opened the client's pool; `close` the client after."""
    await warm_up()  # before the clock starts
    try:
        yield call
    finally:
        await close()


def cashews_call(config: dict[str, Any], factory: Factory) -> AbstractAsyncContextManager[Call]:
    """The factory under cashews' `@cache(ttl=..., lock=True)`."""
    from cashews import Cache as CashewsCache  # noqa: PLC0415 - only the contender's library

    cache = CashewsCache()
    cache.setup(config["url"])
    return serving(cache(ttl=TTL, lock=True)(factory), lambda: cache.get("warm-up"), cache.close)


def fastapi_cache_call(
    config: dict[str, Any], factory: Factory
) -> AbstractAsyncContextManager[Call]:
    """The factory under fastapi-cache2's `@cache(expire=...)` on its Redis backend."""
    from fastapi_cache import FastAPICache  # noqa: PLC0415 - only the contender's library
    from fastapi_cache.backends.redis import RedisBackend  # noqa: PLC0415
    from fastapi_cache.decorator import cache  # noqa: PLC0415

    client = Redis.from_url(config["url"])
    FastAPICache.init(RedisBackend(client), prefix=config["namespace"])
    return serving(cache(expire=TTL)(factory), lambda: client.get("warm-up"), client.aclose)


def aiocache_call(config: dict[str, Any], factory: Factory) -> AbstractAsyncContextManager[Call]:
    """The factory under aiocache's `@cached_stampede` on a `RedisCache`."""
    from aiocache import RedisCache, cached_stampede  # noqa: PLC0415 - only the contender's
    from aiocache.serializers import JsonSerializer  # noqa: PLC0415

    address = urlsplit(config["url"])
    decorator = cached_stampede(
        ttl=TTL,
        cache=RedisCache,
        serializer=JsonSerializer(),
        namespace=config["namespace"],
        endpoint=address.hostname,
        port=address.port,
    )
    call = decorator(factory)
    return serving(call, lambda: decorator.cache.get("warm-up"), decorator.cache.close)


def litestar_app(config: dict[str, Any], factory: Factory, *, atomcache: bool) -> Litestar:
    """A Litestar app whose `/cold` route returns the factory's value, cached for TTL s."""

    async def cold() -> dict[str, Any]:
        return await factory()

    @get(PING, sync_to_thread=False)
    def ping() -> str:
        return "pong"

    if atomcache:
        cache = Cache.from_url(config["url"], namespace=config["namespace"])
        return Litestar([get(COLD)(cached(ttl=TTL)(cold)), ping], plugins=[AtomCachePlugin(cache)])
    store = RedisStore.with_client(url=config["url"], namespace=config["namespace"])
    return Litestar(
        [get(COLD, cache=TTL)(cold), ping],
        stores={STORE: store},
        response_cache_config=ResponseCacheConfig(store=STORE),
    )


@contextlib.asynccontextmanager
async def asgi_call(app: Litestar) -> AsyncIterator[Call]:
    """GET /cold through the app's ASGI interface, in this process; the JSON it answers."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Litestar's logging shows INFO
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]  # narrower ASGI types
    async with (
        app.lifespan(),
        httpx.AsyncClient(transport=transport, base_url="http://bench") as client,
    ):

        async def call() -> Any:
            response = await client.get(COLD)
            response.raise_for_status()
            return response.json()

        (await client.get(PING)).raise_for_status()  # the app's first request, unmeasured
        yield call


@contextlib.asynccontextmanager
async def litestar_call(config: dict[str, Any], factory: Factory) -> AsyncIterator[Call]:
    """Litestar's response cache (`cache=`) on a RedisStore, through ASGI."""
    app = litestar_app(config, factory, atomcache=False)
    await app.stores.get(STORE).get("warm-up")  # open the pool before the clock starts
    async with asgi_call(app) as call:
        yield call


@contextlib.asynccontextmanager
async def atomcache_litestar_call(config: dict[str, Any], factory: Factory) -> AsyncIterator[Call]:
    """The route under atomcache's `@cached`, through ASGI: the requests of `litestar_call`."""
    app = litestar_app(config, factory, atomcache=True)
    async with asgi_call(app) as call:
        await app.plugins.get(AtomCachePlugin).cache.exists("warm-up")
        yield call


CONTENDERS: dict[str, Callable[[dict[str, Any], Factory], AbstractAsyncContextManager[Call]]] = {
    "cashews": cashews_call,
    "fastapi-cache2": fastapi_cache_call,
    "aiocache": aiocache_call,
    "litestar cache=": litestar_call,
    "atomcache (litestar)": atomcache_litestar_call,
}


async def main(config: dict[str, Any]) -> None:
    """Set up the contender named by `config`, run the callers and print what they got."""
    control = Redis.from_url(config["control_url"])
    await control.ping()
    async with CONTENDERS[config["strategy"]](config, make_factory(config, control)) as call:
        results = await run_callers(config, call)
        print(json.dumps({"pid": os.getpid(), "results": results}), flush=True)
    await control.aclose()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
