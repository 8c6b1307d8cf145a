"""Both adapters keep answering while Redis is killed or paused mid-traffic, then resume."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from litestar import Litestar, get
from litestar.params import FromPath  # noqa: TC002 - Litestar reads annotations at run time

from atomcache_core import Cache, CircuitBreaker
from atomcache_fastapi import cached as fastapi_cached
from atomcache_fastapi import setup_cache
from atomcache_litestar import AtomCachePlugin
from atomcache_litestar import cached as litestar_cached
from support.redis_server import RedisServer
from support.servers import serve_asgi

TIMEOUT = 0.3


def fastapi_app(cache: Cache, calls: dict[str, int]) -> Any:
    """One cached FastAPI route counting its calls."""
    app = FastAPI()
    setup_cache(app, cache)

    @app.get("/items/{item_id}")
    @fastapi_cached(ttl=60)
    async def item(item_id: int) -> dict[str, int]:
        calls["item"] = calls.get("item", 0) + 1
        return {"id": item_id}

    return app


def litestar_app(cache: Cache, calls: dict[str, int]) -> Any:
    """One cached Litestar route counting its calls."""

    @get("/items/{item_id:int}")
    @litestar_cached(ttl=60)
    async def item(item_id: FromPath[int]) -> dict[str, int]:
        calls["item"] = calls.get("item", 0) + 1
        return {"id": item_id}

    return Litestar([item], plugins=[AtomCachePlugin(cache)])


@pytest.mark.parametrize("build", [fastapi_app, litestar_app], ids=["fastapi", "litestar"])
@pytest.mark.parametrize("fault", ["kill", "pause"])
async def test_requests_are_answered_through_an_outage(
    build: Any, fault: str, namespace: str
) -> None:
    """Killed or paused Redis: answers within about the timeout, 504 for only-if-cached."""
    server = RedisServer()
    cache = Cache.from_url(
        server.url,
        namespace=namespace,
        socket_timeout=TIMEOUT,
        socket_connect_timeout=TIMEOUT,
        timeout=TIMEOUT,
        breaker=CircuitBreaker(failure_threshold=3, reset_timeout=0.5),
    )
    calls: dict[str, int] = {}
    try:
        async with (
            serve_asgi(build(cache, calls)) as base_url,
            httpx.AsyncClient(base_url=base_url) as client,
        ):
            assert (await client.get("/items/1")).status_code == 200
            assert "hit" in (await client.get("/items/1")).headers["cache-status"]
            if fault == "kill":
                server.stop()
            else:
                server.pause()
            for index in range(6):
                started = time.monotonic()
                response = await client.get(f"/items/{index}")
                assert response.status_code == 200
                assert response.json() == {"id": index}
                assert time.monotonic() - started < 3 * TIMEOUT + 1.0
            calls_before = dict(calls)
            only = await client.get("/items/99", headers={"cache-control": "only-if-cached"})
            assert only.status_code == 504  # RFC 9111 5.2.1.7: nothing stored can be shown
            assert calls == calls_before  # and the handler did not run
            if fault == "kill":
                server = RedisServer(port=server.port)
            else:
                server.resume()
            deadline = time.monotonic() + 10
            while "hit" not in (await client.get("/items/7")).headers["cache-status"]:
                assert time.monotonic() < deadline, "caching did not resume"
                await asyncio.sleep(0.05)
    finally:
        server.stop()  # resumes a paused server first
