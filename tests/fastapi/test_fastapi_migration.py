"""The original atomcache's dependency style, `ResponseCache`, on the new engine."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from pydantic import BaseModel

from atomcache_core import Cache, ConfigurationError
from atomcache_core.http import make_etag
from atomcache_fastapi import ResponseCache, get_cache, setup_cache
from support.servers import serve_asgi

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class Resource(BaseModel):
    """What clients may see: the response model drops the rest."""

    id: int
    name: str


CACHE = ResponseCache(exp=600, namespace=None, lock_timeout=5, cache_control=True)


def build_app(cache: Cache, calls: Counter[str]) -> FastAPI:
    """An app written the way the original atomcache documented it."""
    app = FastAPI()
    setup_cache(app, cache)

    @app.get("/resources", response_model=list[Resource])
    async def resources(
        cache: Annotated[ResponseCache, Depends(CACHE)], offset: int = 0, items: int = 3
    ) -> Any:
        cache_id = f"{offset}-{items}"
        await cache.raise_try(cache_id)
        calls[cache_id] += 1
        await asyncio.sleep(0.1)
        rows = [
            {"id": i, "name": f"r{i}", "secret": "hidden"} for i in range(offset, offset + items)
        ]
        return cache.set(rows, cache_id=cache_id)

    @app.get("/fails")
    async def fails(cache: Annotated[ResponseCache, Depends(ResponseCache(exp=60))]) -> Any:
        await cache.raise_try("x")
        calls["fails"] += 1
        msg = "broken"
        raise RuntimeError(msg)

    @app.get("/namespace")
    async def namespace(shared: Annotated[Cache, Depends(get_cache)]) -> dict[str, str]:
        return {"namespace": shared.namespace}

    return app


@pytest.fixture(params=["memory", "redis"])
async def client(
    request: pytest.FixtureRequest, namespace: str
) -> AsyncIterator[tuple[httpx.AsyncClient, Counter[str]]]:
    """The app on a real server, on memory then on Redis, with its call counter."""
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    calls: Counter[str] = Counter()
    app = build_app(Cache.from_url(url, namespace=namespace), calls)
    async with serve_asgi(app) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        yield http, calls


async def test_hits_are_filtered_final_bytes_with_etag_and_304(
    client: tuple[httpx.AsyncClient, Counter[str]],
) -> None:
    """The second request is a hit of the filtered bytes; its ETag gives 304."""
    http, calls = client
    first = await http.get("/resources", params={"offset": 0})
    hit = await http.get("/resources", params={"offset": 0})
    assert hit.content == first.content
    assert "secret" not in hit.text
    assert hit.json() == [{"id": 0, "name": "r0"}, {"id": 1, "name": "r1"}, {"id": 2, "name": "r2"}]
    assert calls["0-3"] == 1
    assert first.headers["cache-status"].startswith("atomcache; fwd=miss; stored")
    assert hit.headers["cache-status"].startswith("atomcache; hit")
    assert hit.headers["etag"] == make_etag(hit.content)
    revalidated = await http.get(
        "/resources", params={"offset": 0}, headers={"if-none-match": hit.headers["etag"]}
    )
    assert revalidated.status_code == 304


async def test_concurrent_requests_compute_once_each_with_its_own_state(
    client: tuple[httpx.AsyncClient, Counter[str]],
) -> None:
    """Concurrent requests share one computation per cache_id and never each other's result."""
    http, calls = client
    responses = await asyncio.gather(
        *(http.get("/resources", params={"offset": offset}) for offset in (0, 10) * 10)
    )
    assert calls == Counter({"0-3": 1, "10-3": 1})
    for index, response in enumerate(responses):
        expected_first = 0 if index % 2 == 0 else 10
        assert response.json()[0]["id"] == expected_first
    assert CACHE._request is None


async def test_no_cache_answers_without_the_cache(
    client: tuple[httpx.AsyncClient, Counter[str]],
) -> None:
    """With cache_control=True a request's no-cache is answered by the handler, stores nothing.

    The original's meaning: the entry is neither read nor written for that request,
    and the answer says so in Cache-Status.
    """
    http, calls = client
    await http.get("/resources")
    fresh = await http.get("/resources", headers={"cache-control": "no-cache"})
    assert fresh.headers["cache-status"] == 'atomcache; fwd=request; detail="no-cache"'
    assert calls["0-3"] == 2
    again = await http.get("/resources")
    assert again.headers["cache-status"].startswith("atomcache; hit")
    assert calls["0-3"] == 2


async def test_failures_store_nothing_and_release_the_lock(
    client: tuple[httpx.AsyncClient, Counter[str]],
) -> None:
    """A handler that raises gets a 500 each time, and the next request computes again."""
    http, calls = client
    for _ in range(2):
        assert (await http.get("/fails")).status_code == 500
    assert calls["fails"] == 2


async def test_raise_try_outside_a_request_says_how_to_use_it() -> None:
    """raise_try on the object itself explains the Depends form."""
    with pytest.raises(ConfigurationError, match="Depends"):
        await ResponseCache(exp=60).raise_try("x")


async def test_get_cache_gives_handlers_the_cache(
    client: tuple[httpx.AsyncClient, Counter[str]], namespace: str
) -> None:
    """Depends(get_cache) hands a handler the cache given to setup_cache."""
    http, _ = client
    assert (await http.get("/namespace")).json() == {"namespace": namespace}


async def test_the_app_closes_the_cache(redis_url: str, namespace: str) -> None:
    """The cache given to setup_cache is closed with the app's lifespan."""
    cache = Cache.from_url(redis_url, namespace=namespace)
    async with serve_asgi(build_app(cache, Counter())):
        assert cache.redis_client is not None
    assert cache.redis_client is None
