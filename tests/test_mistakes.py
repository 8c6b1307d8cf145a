"""Mistakes in wiring the HTTP cache are told at decoration or startup, never silent."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI, WebSocket
from litestar import Litestar, get, websocket
from litestar import WebSocket as LitestarWebSocket

from atomcache_core import Cache
from atomcache_core.exceptions import ConfigurationError
from atomcache_fastapi import cached, setup_cache
from atomcache_fastapi._middleware import plans_of
from atomcache_litestar import AtomCachePlugin
from atomcache_litestar._plugin import _plan_routes
from support.servers import in_process


def test_cached_above_a_fastapi_route_fails_at_startup() -> None:
    """FastAPI: `@cached` above `@app.get` (the route holds the bare function) is refused."""
    app = FastAPI()
    setup_cache(app, Cache())

    @cached(ttl=60)
    @app.get("/report")
    async def report() -> dict[str, str]:
        return {}

    with pytest.raises(ConfigurationError, match=r"above the route decorator of '/report'"):
        plans_of(app)


def test_cached_above_a_litestar_handler_fails_at_decoration() -> None:
    """Litestar: `@cached` above `@get` receives a route handler, and says where it belongs."""
    with pytest.raises(ConfigurationError, match="directly below the route decorator"):

        @cached(ttl=60)
        @get("/report")
        async def report() -> dict[str, str]:
            return {}


def test_a_litestar_handler_serving_a_cached_function_bare_fails_at_startup() -> None:
    """Litestar: a handler made from a function that `@cached` wrapped elsewhere is refused."""

    async def report() -> dict[str, str]:
        return {}

    cached(ttl=60)(report)
    app = Litestar([get("/report")(report)], plugins=[AtomCachePlugin(Cache())])
    with pytest.raises(ConfigurationError, match="above the route decorator"):
        list(_plan_routes(app))


async def test_a_fastapi_app_without_the_cache_warns() -> None:
    """A `@cached` route of an app with no `setup_cache` says so when it runs."""
    app = FastAPI()

    @app.get("/report")
    @cached(ttl=60)
    async def report() -> dict[str, str]:
        return {"figures": "q3"}

    async with in_process(app) as client:
        with pytest.warns(RuntimeWarning, match=r"setup_cache\(app, cache\)"):
            assert (await client.get("/report")).json() == {"figures": "q3"}


async def test_a_litestar_app_without_the_plugin_warns() -> None:
    """A `@cached` handler of an app with no `AtomCachePlugin` says so when it runs."""

    @get("/report")
    @cached(ttl=60)
    async def report() -> dict[str, str]:
        return {"figures": "q3"}

    async with in_process(Litestar([report])) as client:
        with pytest.warns(RuntimeWarning, match="AtomCachePlugin"):
            assert (await client.get("/report")).json() == {"figures": "q3"}


async def test_the_route_decorator_on_a_plain_function_warns() -> None:
    """The adapters' `cached` on a helper (not a route) points to the core's `cached`."""

    @cached(ttl=60)
    async def price(item: int) -> int:
        return item * 2

    with pytest.warns(RuntimeWarning, match=r"atomcache_core\.cached"):
        assert await price(2) == 4


def test_cached_websocket_routes_are_refused_at_startup() -> None:
    """`@cached` on a websocket route (nothing to store) is refused, naming the route."""
    app = FastAPI()
    setup_cache(app, Cache())

    @app.websocket("/feed")
    @cached(ttl=60)
    async def feed(socket: WebSocket) -> None:
        await socket.close()

    with pytest.raises(ConfigurationError, match=r"websocket route '/feed'"):
        plans_of(app)

    @websocket("/feed")
    @cached(ttl=60)
    async def litestar_feed(socket: LitestarWebSocket[Any, Any, Any]) -> None:
        await socket.close()

    litestar_app = Litestar([litestar_feed], plugins=[AtomCachePlugin(Cache())])
    with pytest.raises(ConfigurationError, match=r"websocket route '/feed'"):
        list(_plan_routes(litestar_app))


async def test_the_route_decorator_on_a_helper_of_a_served_app_warns() -> None:
    """In an app with the cache, a helper under the adapters' `cached` says so when it runs.

    Called from an uncached route or from a cached route's handler alike; the cached
    routes themselves, bypasses included, run without a word.
    """
    app = FastAPI()
    setup_cache(app, Cache())

    @cached(ttl=60)
    async def price(item: int) -> int:
        return item * 2

    @app.get("/plain")
    async def plain() -> dict[str, int]:
        return {"price": await price(2)}

    @app.get("/cached")
    @cached(ttl=60)
    async def cached_page() -> dict[str, int]:
        return {"price": await price(3)}

    @app.get("/quiet")
    @cached(ttl=60)
    async def quiet() -> dict[str, str]:
        return {"figures": "q3"}

    async with in_process(app) as client:
        for path in ("/plain", "/cached"):
            with pytest.warns(RuntimeWarning, match=r"atomcache_core\.cached"):
                assert (await client.get(path)).status_code == 200
        for headers in ({}, {"cookie": "a=1"}):  # computed, bypassed: no warning (an error)
            assert (await client.get("/quiet", headers=headers)).status_code == 200
        assert (await client.post("/quiet")).status_code == 405
