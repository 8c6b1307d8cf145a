"""`ResponseCache` keeps the original atomcache's names and meanings, on the new core."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from redis.asyncio import Redis
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from atomcache_core import MAX_TTL, Cache, ConfigurationError
from atomcache_fastapi import ResponseCache
from support.servers import serve_asgi

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator


SLOW_TTL, SLOW_WORK = 2.0, 1.2  # a computation longer than the base lead time (1 s)


@pytest.fixture(autouse=True)
def in_memory_backend() -> Iterator[None]:
    """Each test starts from the in-memory backend every `ResponseCache` shares."""
    before = ResponseCache.backend
    ResponseCache.backend = Cache(namespace="atomcache")
    yield
    ResponseCache.backend = before


def build_app(calls: Counter[str], redis_url: str | None) -> FastAPI:
    """Routes written the original way; `init` at startup, on Redis or an in-memory Cache."""
    app = FastAPI()

    async def start_app() -> None:
        client = Redis.from_url(redis_url) if redis_url is not None else Cache()
        await ResponseCache.init(app, client)

    async def stop_app() -> None:
        await ResponseCache.backend.close()

    app.router.add_event_handler("startup", start_app)
    app.router.add_event_handler("shutdown", stop_app)

    @app.get("/maybe")
    async def maybe(
        cache: Annotated[ResponseCache, Depends(ResponseCache(exp=60))],
        empty: bool = False,  # noqa: FBT001, FBT002 - a query parameter
    ) -> list[int]:
        await cache.raise_try(f"empty={empty}")
        calls[f"maybe-{empty}"] += 1
        if empty:
            return []  # kept out of the cache: set is not called
        return cache.set([1, 2], cache_id=f"empty={empty}")

    @app.get("/unlocked")
    async def unlocked(cache: Annotated[ResponseCache, Depends(ResponseCache(exp=60))]) -> int:
        await cache.raise_try("x", with_lock=False)
        calls["unlocked"] += 1
        await asyncio.sleep(0.2)
        return cache.set(1, cache_id="x")

    @app.get("/spaced/{name}")
    async def spaced(
        name: str, cache: Annotated[ResponseCache, Depends(ResponseCache(exp=60))]
    ) -> dict[str, Any]:
        await cache.raise_try(name, lockspace="one-at-a-time")
        started = time.monotonic()
        calls[f"spaced-{name}"] += 1
        await asyncio.sleep(0.3)
        return cache.set({"name": name, "started": started}, cache_id=name)

    @app.get("/pages")
    def pages(page: int, cache: Annotated[ResponseCache, Depends(ResponseCache(exp=60))]) -> Any:
        calls[f"pages-{page}"] += 1
        return cache.set({"page": page}, cache_id="ignored")

    @app.get("/slow")
    async def slow(
        cache: Annotated[ResponseCache, Depends(ResponseCache(exp=SLOW_TTL, auto_refresh=True))],
    ) -> int:
        await cache.raise_try()
        calls["slow"] += 1
        await asyncio.sleep(SLOW_WORK)
        return cache.set(calls["slow"])

    @app.get("/forever")
    async def forever(cache: Annotated[ResponseCache, Depends(ResponseCache(exp=None))]) -> int:
        await cache.raise_try()
        calls["forever"] += 1
        return cache.set(1)

    return app


@pytest.fixture(params=["memory", "redis"])
async def client(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[httpx.AsyncClient, Counter[str]]]:
    """The app on a real uvicorn: in memory, or on Redis through `ResponseCache.init`."""
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    calls: Counter[str] = Counter()
    async with (
        serve_asgi(build_app(calls, redis_url)) as base_url,
        httpx.AsyncClient(base_url=base_url) as http,
    ):
        yield http, calls


async def test_nothing_is_stored_unless_set_is_called(
    client: tuple[httpx.AsyncClient, Counter[str]],
) -> None:
    """A handler that returns without set computes every time; one that sets is a hit."""
    http, calls = client
    for _ in range(2):
        answer = await http.get("/maybe", params={"empty": True})
        assert answer.json() == []
        assert answer.headers["cache-status"] == 'atomcache; fwd=miss; detail="not set"'
    assert calls["maybe-True"] == 2
    await http.get("/maybe")
    hit = await http.get("/maybe")
    assert hit.headers["cache-status"].startswith("atomcache; hit")
    assert calls["maybe-False"] == 1


async def test_raise_try_without_a_lock_never_waits(
    client: tuple[httpx.AsyncClient, Counter[str]],
) -> None:
    """with_lock=False: concurrent cold requests each compute; the result is then stored."""
    http, calls = client
    answers = await asyncio.gather(*(http.get("/unlocked") for _ in range(3)))
    assert [answer.status_code for answer in answers] == [200] * 3
    assert calls["unlocked"] == 3
    hit = await http.get("/unlocked")
    assert hit.headers["cache-status"].startswith("atomcache; hit")


async def test_a_lockspace_computes_one_entry_at_a_time(
    client: tuple[httpx.AsyncClient, Counter[str]],
) -> None:
    """Two entries sharing a lockspace are computed one after the other, each once."""
    http, calls = client
    first, second = await asyncio.gather(http.get("/spaced/a"), http.get("/spaced/b"))
    started = sorted([first.json()["started"], second.json()["started"]])
    assert started[1] - started[0] >= 0.25
    assert calls == Counter({"spaced-a": 1, "spaced-b": 1})


async def test_exp_none_keeps_the_entry(
    client: tuple[httpx.AsyncClient, Counter[str]],
) -> None:
    """exp=None: the entry is kept MAX_TTL (10 years), as long as any backend keeps one."""
    http, calls = client
    await http.get("/forever")
    hit = await http.get("/forever")
    max_age = int(hit.headers["cache-control"].removeprefix("max-age="))
    assert MAX_TTL - 5 < max_age <= MAX_TTL
    assert calls["forever"] == 1


async def test_direct_use_computes_once_and_waits_for_the_first_caller(
    request: pytest.FixtureRequest,
) -> None:
    """get/set outside a route: the first caller of a missing key computes, others wait."""
    redis_url = request.getfixturevalue("redis_url")
    await ResponseCache.init(FastAPI(), Redis.from_url(redis_url))
    cache = ResponseCache(exp=1200, namespace=f"direct-{time.monotonic_ns()}:")
    calls = 0

    async def helper(ref: str) -> list[dict[str, Any]]:
        nonlocal calls
        cached_value = await cache.get(cache_id=ref)
        if cached_value is not None:
            return cached_value  # type: ignore[no-any-return]
        calls += 1
        await asyncio.sleep(0.2)
        return cache.set([{"ref": ref}], cache_id=ref)

    try:
        results = await asyncio.gather(*(helper("r1") for _ in range(5)))
        assert results == [[{"ref": "r1"}]] * 5
        assert calls == 1
        assert await cache.get("r1", decode=False) == '[{"ref": "r1"}]'
        assert cache.mset({"a": 1, "b": {"c": 2}}) == {"a": 1, "b": {"c": 2}}
        deadline = time.monotonic() + 2
        while await cache.mget("a", "b", "missing") != {"a": 1, "b": {"c": 2}}:
            assert time.monotonic() < deadline, "mset never landed"
            await asyncio.sleep(0.01)
    finally:
        await ResponseCache.backend.close()


async def test_a_first_caller_that_never_sets_frees_the_key_after_lock_timeout() -> None:
    """Waiters give up after lock_timeout; the next get takes the key over."""
    cache = ResponseCache(exp=60, namespace="abandoned:", lock_timeout=0.3)
    assert await cache.get("k") is None  # this caller should set, and never does
    started = time.monotonic()
    assert await cache.get("k") is None  # waited for it, in vain
    assert 0.2 < time.monotonic() - started < 2
    assert await cache.get("k") is None  # the lock expired: this one computes
    cache.set("v", cache_id="k")
    deadline = time.monotonic() + 2
    while await cache.get("k", with_lock=False) != "v":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


def test_init_refuses_other_clients() -> None:
    """Anything but a Redis client or a Cache is refused, as the original did, with the fix."""
    with pytest.raises(TypeError, match=r"Unsupported.*Pass a redis\.asyncio\.Redis client"):
        asyncio.run(ResponseCache.init(FastAPI(), object()))


async def test_def_endpoints_get_an_entry_per_uri(
    client: tuple[httpx.AsyncClient, Counter[str]],
) -> None:
    """A plain def endpoint (no raise_try of its own) never gets another query's answer."""
    http, calls = client
    for page in (1, 2, 1, 2):
        answer = await http.get("/pages", params={"page": page})
        assert answer.json() == {"page": page}
    assert calls == Counter({"pages-1": 1, "pages-2": 1})
    assert (
        (await http.get("/pages", params={"page": 2}))
        .headers["cache-status"]
        .startswith("atomcache; hit")
    )


async def test_a_slow_computation_is_renewed_before_its_entry_expires(
    client: tuple[httpx.AsyncClient, Counter[str]],
) -> None:
    """auto_refresh starts early enough for a computation of half the TTL: no reader waits."""
    http, calls = client
    await http.get("/slow")
    deadline = time.monotonic() + 3 * SLOW_TTL
    while time.monotonic() < deadline:
        answer = await http.get("/slow")
        assert answer.headers["cache-status"].startswith("atomcache; hit"), answer.headers
        await asyncio.sleep(0.2)
    assert calls["slow"] >= 3


async def stored(cache: ResponseCache, cache_id: str) -> Any:
    """What `cache` holds under `cache_id` once the background write of `set` has landed."""
    deadline = time.monotonic() + 2
    while (value := await cache.get(cache_id, with_lock=False)) is None:
        assert time.monotonic() < deadline, "set never landed"
        await asyncio.sleep(0.01)
    return value


async def test_a_response_given_to_set_is_stored_as_its_body() -> None:
    """`set(JSONResponse(...))` keeps the response's JSON body, as the original did."""
    cache = ResponseCache(exp=60, namespace="responses:")
    response = JSONResponse({"hello": "world"})
    assert cache.set(response, cache_id="json") is response
    assert await stored(cache, "json") == {"hello": "world"}
    assert await cache.get("json", decode=False) == '{"hello": "world"}'
    cache.mset({"text": PlainTextResponse("plain words"), "list": JSONResponse([1, 2])})
    assert await stored(cache, "text") == "plain words"
    assert await stored(cache, "list") == [1, 2]


async def test_a_response_without_a_text_body_is_refused_by_set() -> None:
    """A stream or a binary body cannot be kept as the original kept bodies: set says so."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b"x"

    cache = ResponseCache(exp=60, namespace="refused:")
    with pytest.raises(ConfigurationError, match="streaming response"):
        cache.set(StreamingResponse(chunks()), cache_id="stream")
    with pytest.raises(ConfigurationError, match="not UTF-8 text"):
        cache.mset({"binary": Response(b"\xff\xfe", media_type="image/png")})


async def test_get_and_set_in_a_route_without_raise_try_keep_values() -> None:
    """A route's dependency used with get/set (no raise_try) stores what set is given."""
    calls: Counter[str] = Counter()
    app = FastAPI()

    @app.get("/profile/{name}")
    async def profile(
        name: str, cache: Annotated[ResponseCache, Depends(ResponseCache(exp=60))]
    ) -> dict[str, Any]:
        found = await cache.get(cache_id=name)
        if found is not None:
            return {"cached": True, **found}
        calls[name] += 1
        return {"cached": False, **cache.set({"name": name}, cache_id=name)}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/profile/ada")).json() == {"cached": False, "name": "ada"}
        deadline = time.monotonic() + 2
        while not (answer := (await client.get("/profile/ada")).json())["cached"]:
            assert time.monotonic() < deadline, "set never landed"
            await asyncio.sleep(0.01)
        assert answer == {"cached": True, "name": "ada"}
    assert calls == {"ada": 1}
