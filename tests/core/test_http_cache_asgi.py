"""`HttpCache` without a framework: hand-written ASGI handlers served through it.

What both adapters share is `HttpCache.serve`; here it is called as an adapter calls it
(a route's plan, its path parameters, the app to run on a miss), driven by httpx over
ASGI, with the in-memory `Cache`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

from atomcache_core import Cache
from atomcache_core.asgi import HttpCache, RouteOptions, RoutePlan
from atomcache_core.http import parse_cache_control

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from atomcache_core.asgi import ASGIApp, Receive, Scope, Send


class Handler:
    """An ASGI handler answering JSON with the number of times it ran."""

    def __init__(self, *headers: tuple[bytes, bytes]) -> None:
        """Add `headers` to each response."""
        self.calls = 0
        self.headers = list(headers)

    async def __call__(self, _scope: Scope, _receive: Receive, send: Send) -> None:
        """Answer one request."""
        self.calls += 1
        body = b'{"calls": %d}' % self.calls
        fields = [(b"content-type", b"application/json"), *self.headers]
        await send({"type": "http.response.start", "status": 200, "headers": fields})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def cache() -> AsyncIterator[Cache]:
    """An in-memory cache, closed after the test."""
    async with Cache() as cache:
        yield cache


def client(cache: Cache, handler: ASGIApp, options: RouteOptions) -> httpx.AsyncClient:
    """A client of an app whose one route, `/items`, is `handler` served through `HttpCache`."""
    http_cache = HttpCache(cache)
    route = RoutePlan("/items", options)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await http_cache.serve(scope, receive, send, handler, route=route, path_params={})

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shop.example")


async def test_a_second_request_is_a_hit(cache: Cache) -> None:
    """The first request runs the handler and stores; the second is answered from the entry."""
    handler = Handler()
    async with client(cache, handler, RouteOptions(ttl=60)) as http:
        first = await http.get("/items")
        second = await http.get("/items")
    assert first.headers["cache-status"] in {
        f"atomcache; fwd=miss; stored; ttl={n}" for n in (59, 60)
    }
    assert second.headers["cache-status"] in {f"atomcache; hit; ttl={n}" for n in (59, 60)}
    assert second.content == first.content == b'{"calls": 1}'
    assert second.headers["etag"] == first.headers["etag"]
    assert int(parse_cache_control(second.headers["cache-control"])["max-age"] or 0) <= 60
    assert "age" not in second.headers
    assert handler.calls == 1


async def test_a_revalidation_with_the_etag_is_a_304(cache: Cache) -> None:
    """If-None-Match with the entry's ETag: 304, no body, the same validators."""
    async with client(cache, Handler(), RouteOptions(ttl=60)) as http:
        etag = (await http.get("/items")).headers["etag"]
        revalidated = await http.get("/items", headers={"if-none-match": etag})
    assert revalidated.status_code == 304
    assert revalidated.content == b""
    assert revalidated.headers["etag"] == etag
    assert revalidated.headers["cache-status"].startswith("atomcache; hit; ttl=")
    assert "content-type" not in revalidated.headers


async def test_a_request_with_credentials_bypasses_and_says_why(cache: Cache) -> None:
    """Authorization on a route not keyed on it: the handler runs, private, with the reason."""
    handler = Handler()
    async with client(cache, handler, RouteOptions(ttl=60)) as http:
        await http.get("/items")
        signed_in = await http.get("/items", headers={"authorization": "Bearer alice"})
    assert signed_in.headers["cache-status"] == 'atomcache; fwd=bypass; detail="authorization"'
    assert signed_in.content == b'{"calls": 2}'
    assert "private" in parse_cache_control(signed_in.headers["cache-control"])
    assert "Authorization" in signed_in.headers["vary"]


async def test_an_entry_keyed_on_credentials_is_private_and_one_per_caller(cache: Cache) -> None:
    """vary_on=authorization: one entry per token, each sent private with Vary (HTTP.md 2.2)."""
    handler = Handler()
    async with client(cache, handler, RouteOptions(ttl=60, vary_on=("authorization",))) as http:
        alice = {"authorization": "Bearer alice"}
        await http.get("/items", headers=alice)
        again = await http.get("/items", headers=alice)
        bob = await http.get("/items", headers={"authorization": "Bearer bob"})
    assert again.headers["cache-status"].startswith("atomcache; hit")
    assert again.content == b'{"calls": 1}'
    assert parse_cache_control(again.headers["cache-control"]).keys() == {"private", "max-age"}
    assert "Authorization" in again.headers["vary"]
    assert bob.content == b'{"calls": 2}'
    assert bob.headers["cache-status"].startswith("atomcache; fwd=miss; stored; ttl=")


async def test_a_response_with_set_cookie_is_sent_and_not_stored(cache: Cache) -> None:
    """Set-Cookie makes a response one user's: sent as it is, never stored (HTTP.md 1.4)."""
    handler = Handler((b"set-cookie", b"session=1"))
    async with client(cache, handler, RouteOptions(ttl=60)) as http:
        first = await http.get("/items")
        second = await http.get("/items")
    assert first.headers["cache-status"] == 'atomcache; fwd=miss; detail="not storable"'
    assert second.content == b'{"calls": 2}'
    assert second.headers["set-cookie"] == "session=1"


async def test_other_methods_pass_through_untouched(cache: Cache) -> None:
    """A POST runs the handler and gets no Cache-Status of the cache (HTTP.md 1.1)."""
    handler = Handler()
    async with client(cache, handler, RouteOptions(ttl=60)) as http:
        posted = await http.post("/items")
        posted_again = await http.post("/items")
    assert posted_again.content == b'{"calls": 2}'
    assert "cache-status" not in posted.headers


async def test_only_if_cached_without_an_entry_is_a_504(cache: Cache) -> None:
    """only-if-cached and nothing stored: 504, the handler not run (RFC 9111 5.2.1.7)."""
    handler = Handler()
    async with client(cache, handler, RouteOptions(ttl=60)) as http:
        response = await http.get("/items", headers={"cache-control": "only-if-cached"})
    assert response.status_code == 504
    assert response.headers["cache-status"] == 'atomcache; fwd=miss; detail="only-if-cached"'
    assert handler.calls == 0
