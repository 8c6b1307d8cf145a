"""The HTTP behaviour of HTTP.md, written once and run against every adapter.

Each adapter's test module builds an app with the routes below (same paths, same
behaviour) on a real server, wraps it in a `Harness`, and runs every scenario here.
Handlers count their calls in `harness.calls[name]` and put the count in the body.

Routes (path: options -> what the handler does, counted under its name):

- GET /items?offset&limit: ttl=60 -> "items", rows filtered by the response model
- GET /items/{item_id}: ttl=60 -> "item", {"id", "version": flags["version"] or 1}
- POST /items: not cached -> "create"
- GET /status/{code}: ttl=60 -> "status", answers with that status code
- GET /boom: ttl=60 -> "boom", raises
- GET /cookie: ttl=60 -> "cookie", sets a cookie
- GET /directive/{value}: ttl=60 -> "directive", sends Cache-Control: value
- GET /stream: ttl=60 -> "stream", streams three chunks
- GET /big: ttl=60, max_body_size=1024 -> "big", a 2,048 byte body
- GET /shared: ttl=60 -> "shared"
- GET /per-user: ttl=60, vary_on=("authorization",) -> "per-user", echoes it as "auth"
- GET /by-user/{item_id}: ttl=60, vary_on=("authorization",) -> "by-user", the same
- GET /per-user/lang: ttl=60, vary_on=("authorization", "accept-language") -> "per-user-lang"
- GET /lang: ttl=60, vary_on=("accept-language",) -> "lang", echoes it as "lang"
- GET /deps: ttl=60 -> "deps", takes an injected dependency
- GET /slow: ttl=60 -> "slow", sleeps 0.2 s
- GET /stale: ttl=1, stale_ttl=30 -> "stale", sleeps 1 s
- GET /flaky: ttl=1, stale_if_error=1 -> "flaky", raises while flags["fail"]
- GET /tagged/{item_id}: ttl=60, tags "tagged" and f"item:{item_id}" -> "tagged"
- GET /public: ttl=60, cache_control="public, max-age=3600, s-maxage=600" -> "public"
- GET /ignore: ttl=60, no_cache="ignore" -> "ignore"
- GET /refresh: ttl=60, min_refresh_interval=0.5 -> "refresh", sleeps 0.1 s
- GET /refresh/now: ttl=60, min_refresh_interval=0 -> "refresh-now"
- GET /header: ttl=60 -> "header", sets X-Custom: yes
- GET /constant: ttl=60 -> "constant", the same body on every call
- GET /fragile: ttl=60 -> "fragile", 400 when any request header is over 1,000 characters
- GET /background?fail: ttl=60 -> "background", with a 2 s background task (failing at
  its end with fail=true)
- GET /stream/slow: ttl=60 -> "slow-stream", streams 6 chunks 0.25 s apart
- GET /negotiated: ttl=60 -> "negotiated", a greeting in the Accept-Language asked,
  with `Vary: Accept-Language`
- GET /negotiated/any: ttl=60 -> "vary-star", with `Vary: *`
- GET /dated: ttl=60 -> "dated", with its own ETag "v1", Last-Modified (2020),
  Cache-Control "public, max-age=30, must-revalidate", X-Request-ID, traceparent and
  Server-Timing
- GET /sorted?offset&limit: ttl=60, sort_query=True -> "sorted"
- GET /guarded/... (`Harness.guarded`): public=True behind a check of the app (a
  dependency, a guard, a router's, a decorator above @cached, a sync handler...) that
  refuses requests without `Cookie: session=valid`, `X-API-Key: k1` or `X-Staff: yes`
  -> "guarded"
- GET /me: ttl=60 -> "me", the profile of the `session` cookie (a, b or none), declared
- GET /me/keyed: ttl=60, vary_on_cookies=("session",) -> "me", the same
- GET /profile/by-key: ttl=60, vary_on=("x-api-key",) -> "by-key", echoes the key
- GET /link: ttl=60 -> "link", an HTML form posting to `url_for("reset")`
- GET /grouped/one, /grouped/two: ttl=60, namespace="grouped" -> "grouped"

Bodies are JSON objects with {"calls": <the handler's call count>} (but /constant's).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import pytest
import time_machine

from atomcache_core import Cache
from atomcache_core.http import make_etag, parse_cache_control
from support.redis_server import RedisServer
from support.servers import serve_asgi

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable


#: What GET /dated answers with, besides its body.
DATED_HEADERS = {
    "etag": '"v1"',
    "last-modified": "Wed, 01 Jan 2020 00:00:00 GMT",
    "cache-control": "public, max-age=30, must-revalidate",
    "x-request-id": "fill",
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "server-timing": "db;dur=53",
}


GREETINGS = {"fr": "bonjour", "de": "hallo"}
PROFILES = {"a": {"name": "Alice"}, "b": {"name": "Bob"}, None: {"name": "anonymous"}}


async def slow_task(*, fail: bool) -> None:
    """A background task of 2 s that fails at its end when asked to."""
    await asyncio.sleep(2)
    if fail:
        msg = "the background task failed"
        raise RuntimeError(msg)


async def slow_chunks() -> AsyncIterator[bytes]:
    """6 chunks, 0.25 s apart."""
    for index in range(6):
        yield f"chunk {index}\n".encode()
        await asyncio.sleep(0.25)


class Invalidate(Protocol):
    """The adapter's invalidation helper, bound to the app."""

    def __call__(
        self,
        route: str,
        *,
        path_params: dict[str, Any] | None = ...,
        query: dict[str, Any] | None = ...,
        headers: dict[str, str] | None = ...,
    ) -> Awaitable[int]:
        """Drop one entry of `route` (with parameters) or all of them; return how many."""
        ...


@dataclass
class Harness:
    """A running app of an adapter, a client for it, and what its handlers did.

    `guarded` lists the adapter's routes behind the app's own checks, one per kind of
    check the framework has.
    """

    client: httpx.AsyncClient
    cache: Cache
    invalidate: Invalidate
    calls: Counter[str] = field(default_factory=Counter)
    flags: dict[str, Any] = field(default_factory=dict)
    guarded: tuple[str, ...] = ()
    clock: time_machine.Traveller | None = None

    def pass_time(self, seconds: float) -> None:
        """Move the wall clock `seconds` on at once, instead of sleeping.

        Freshness, stale windows and refresh intervals are decided by the wall clock
        (the entries' own times), which `time-machine` moves for the whole process.
        """
        assert self.clock is not None
        self.clock.shift(seconds)


def status_of(response: httpx.Response) -> str:
    """The Cache-Status header (every cached route sends one)."""
    value: str | None = response.headers.get("cache-status")
    assert value is not None, f"no Cache-Status on {response.request.url}"
    return value


# 1. Only GET and HEAD are served from the cache; HEAD uses the GET entry.
async def methods_get_and_head_only(h: Harness) -> None:
    """GET is cached; HEAD uses the GET entry without a body; POST always runs."""
    first = await h.client.get("/items/1")
    head = await h.client.head("/items/1")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["etag"] == first.headers["etag"]
    assert h.calls["item"] == 1
    await h.client.post("/items")
    await h.client.post("/items")
    assert h.calls["create"] == 2


async def head_first_fills_the_get_entry(h: Harness) -> None:
    """A HEAD on a cold key runs the GET handler once and the GET is then a hit."""
    head = await h.client.head("/items/7")
    assert head.status_code == 200
    assert head.content == b""
    get = await h.client.get("/items/7")
    assert get.json()["item"]["id"] == 7
    assert status_of(get).startswith("atomcache; hit")
    assert h.calls["item"] == 1


# 2. Only 200 is stored by default; errors never.
async def errors_are_never_stored(h: Harness) -> None:
    """404 and 500 responses and exceptions run the handler every time."""
    for _ in range(2):
        assert (await h.client.get("/status/404")).status_code == 404
        assert (await h.client.get("/status/500")).status_code == 500
        assert (await h.client.get("/boom")).status_code == 500
    assert h.calls["status"] == 4
    assert h.calls["boom"] == 2
    for _ in range(2):
        assert (await h.client.get("/status/200")).status_code == 200
    assert h.calls["status"] == 5


# 3. The final response is stored; a hit does not call the handler nor re-serialize.
async def final_bytes_are_stored_and_replayed(h: Harness) -> None:
    """A hit returns the same bytes, filtered by the response model, without the handler."""
    first = await h.client.get("/items", params={"limit": 2})
    second = await h.client.get("/items", params={"limit": 2})
    assert second.content == first.content
    assert first.json() == {
        "calls": 1,
        "items": [{"id": 0, "name": "item 0"}, {"id": 1, "name": "item 1"}],
    }
    assert "secret" not in first.text
    assert h.calls["items"] == 1
    assert status_of(second).startswith("atomcache; hit")
    assert second.headers["content-type"] == first.headers["content-type"]
    assert int(second.headers["content-length"]) == len(second.content)


async def stored_headers_are_replayed(h: Harness) -> None:
    """The handler's own fields come back on hits; Date is fresh, not stored."""
    await h.client.get("/header")
    hit = await h.client.get("/header")
    assert hit.headers["x-custom"] == "yes"
    assert "set-cookie" not in hit.headers
    assert h.calls["header"] == 1


# 4. What is not stored.
async def set_cookie_responses_are_not_stored(h: Harness) -> None:
    """A response with Set-Cookie is sent (cookie included) and never replayed to others."""
    first = await h.client.get("/cookie")
    second = await h.client.get("/cookie")
    assert "session=" in first.headers["set-cookie"]
    assert "session=" in second.headers["set-cookie"]
    assert h.calls["cookie"] == 2


async def uncacheable_directives_are_not_stored(h: Harness) -> None:
    """Responses saying no-store, private or no-cache run the handler every time."""
    for directive in ("no-store", "private", "no-cache"):
        for _ in range(2):
            response = await h.client.get(f"/directive/{directive}")
            assert response.status_code == 200
    assert h.calls["directive"] == 6


async def streaming_passes_through(h: Harness) -> None:
    """A streaming response arrives whole and untouched, and is not stored (it says so)."""
    first = await h.client.get("/stream")
    second = await h.client.get("/stream")
    assert first.content == b"chunk 0\nchunk 1\nchunk 2\n"
    assert second.content == first.content
    assert status_of(second) == 'atomcache; fwd=miss; detail="streamed"'
    assert h.calls["stream"] == 2


async def oversized_bodies_are_served_not_stored(h: Harness) -> None:
    """A body over max_body_size is sent in full and not stored."""
    first = await h.client.get("/big")
    await h.client.get("/big")
    assert len(first.content) == 2048
    assert h.calls["big"] == 2
    assert "too large" in status_of(first)


async def poisoned_requests_do_not_poison_the_cache(h: Harness) -> None:
    """A huge junk header that makes the handler fail (CPDoS) stores nothing for others."""
    poisoned = await h.client.get("/fragile", headers={"x-junk": "j" * 8000})
    assert poisoned.status_code == 400
    clean = await h.client.get("/fragile")
    assert clean.status_code == 200
    assert h.calls["fragile"] == 2


async def concurrent_waiters_are_released_by_an_oversized_body(h: Harness) -> None:
    """Concurrent requests for a body too large to store each get it, without waiting."""
    started = time.monotonic()
    responses = await asyncio.gather(*(h.client.get("/big") for _ in range(5)))
    assert [len(response.content) for response in responses] == [2048] * 5
    assert time.monotonic() - started < 2.0  # well under the re-check interval
    assert h.calls["big"] == 5


async def background_tasks_run_after_the_response(h: Harness) -> None:
    """A 2 s background task delays neither the response nor its waiters (HTTP.md 1.5).

    Its failure changes nothing already sent.
    """
    for query in ("", "?fail=true"):
        started = time.monotonic()
        responses = await asyncio.gather(*(h.client.get(f"/background{query}") for _ in range(6)))
        assert time.monotonic() - started < 1.5
        assert [response.status_code for response in responses] == [200] * 6
        assert {response.json()["calls"] for response in responses} == {h.calls["background"]}
        hit = await h.client.get(f"/background{query}")
        assert status_of(hit).startswith("atomcache; hit")
    assert h.calls["background"] == 2


async def stream_joiners_start_at_once(h: Harness) -> None:
    """A stream's joiner gets its first chunk at once, not when the other ends (HTTP.md 1.4)."""

    async def first_chunk_after(delay: float) -> tuple[float, bytes]:
        await asyncio.sleep(delay)
        started = time.monotonic()
        async with h.client.stream("GET", "/stream/slow") as response:
            chunks = response.aiter_bytes()
            await anext(chunks)
            waited = time.monotonic() - started
            rest = b"".join([chunk async for chunk in chunks])
        return waited, rest

    (_, first), (waited, second) = await asyncio.gather(
        first_chunk_after(0), first_chunk_after(0.1)
    )
    assert waited < 0.6
    assert first.endswith(b"chunk 5\n")
    assert second.endswith(b"chunk 5\n")
    assert h.calls["slow-stream"] == 2


# 4b. The response's own Vary (HTTP.md 3.1, RFC 9111 section 4.1).
async def the_responses_vary_selects_the_entry(h: Harness) -> None:
    """A response that says `Vary: Accept-Language` is only served to the same language.

    Each variant is computed once: the request after the first is a hit (RFC 9111
    section 4.1), and a variant of one URL leaves the entries of others reachable.
    """
    expected = {"fr": "bonjour", "de": "hallo", None: "hello"}
    for page in ("1", "2"):
        for language, text in expected.items():
            headers = {"accept-language": language} if language else {}
            for attempt in range(2):
                response = await h.client.get(f"/negotiated?page={page}", headers=headers)
                assert response.json()["text"] == text, language
                assert "accept-language" in response.headers["vary"].lower()
                if attempt:
                    assert status_of(response).startswith("atomcache; hit"), (page, language)
    for page in ("1", "2"):
        for language in expected:
            headers = {"accept-language": language} if language else {}
            hit = await h.client.get(f"/negotiated?page={page}", headers=headers)
            assert status_of(hit).startswith("atomcache; hit"), (page, language)
    assert h.calls["negotiated"] == 2 * len(expected)  # once per variant of each URL


async def vary_star_is_never_stored(h: Harness) -> None:
    """A response with `Vary: *` matches no later request: it is never stored."""
    for _ in range(2):
        response = await h.client.get("/negotiated/any")
        assert "not storable" in status_of(response)
    assert h.calls["vary-star"] == 2


# 5. Authorization.
async def authorized_requests_bypass_shared_entries(h: Harness) -> None:
    """A request with Authorization neither reads nor fills a shared entry."""
    await h.client.get("/shared")
    authorized = await h.client.get("/shared", headers={"authorization": "Bearer alice"})
    assert authorized.json()["calls"] == 2
    assert "bypass" in status_of(authorized)
    anonymous = await h.client.get("/shared")
    assert anonymous.json()["calls"] == 1


async def per_user_routes_key_on_authorization(h: Harness) -> None:
    """With vary_on=("authorization",) each user gets their own entry, sent private."""
    alice = {"authorization": "Bearer alice"}
    bob = {"authorization": "Bearer bob"}
    first = await h.client.get("/per-user", headers=alice)
    assert first.json()["auth"] == "Bearer alice"
    assert (await h.client.get("/per-user", headers=bob)).json()["auth"] == "Bearer bob"
    again = await h.client.get("/per-user", headers=alice)
    assert again.json()["auth"] == "Bearer alice"
    assert status_of(again).startswith("atomcache; hit")
    assert h.calls["per-user"] == 2
    for response in (first, again):
        directives = parse_cache_control(response.headers["cache-control"])
        assert "private" in directives
        assert {"public", "s-maxage"}.isdisjoint(directives)
        assert "authorization" in response.headers["vary"].lower()


# 5b. Credentials (HTTP.md 2.1, 2.2).
async def cookies_bypass_shared_entries(h: Harness) -> None:
    """A request with a Cookie or an API key neither reads nor fills a shared entry."""
    await h.client.get("/shared")
    for name, value in (("cookie", "theme=dark"), ("x-api-key", "k1")):
        carrying = await h.client.get("/shared", headers={name: value})
        assert status_of(carrying) == f'atomcache; fwd=bypass; detail="{name}"'
    assert h.calls["shared"] == 3
    assert (await h.client.get("/shared")).json()["calls"] == 1


async def personal_pages_never_cross_users(h: Harness) -> None:
    """A handler declaring the cookie it reads, no options: an entry per user, sent private."""
    alice = await h.client.get("/me", headers={"cookie": "session=a"})
    bob = await h.client.get("/me", headers={"cookie": "session=b"})
    anonymous = await h.client.get("/me")
    again = await h.client.get("/me", headers={"cookie": "session=b"})
    assert [r.json()["name"] for r in (alice, bob, anonymous, again)] == [
        "Alice", "Bob", "anonymous", "Bob"
    ]  # fmt: skip
    assert status_of(again).startswith("atomcache; hit")
    assert "private" in parse_cache_control(again.headers["cache-control"])
    assert h.calls["me"] == 3


async def named_cookies_key_the_entry(h: Harness) -> None:
    """vary_on_cookies: an entry per session, other cookies ignored, sent private + Vary."""
    alice = await h.client.get("/me/keyed", headers={"cookie": 'prefs={"a":1}; session=a'})
    bob = await h.client.get("/me/keyed", headers={"cookie": 'prefs={"a":1}; session=b; _ga=1'})
    again = await h.client.get("/me/keyed", headers={"cookie": "_ga=2; session=a"})
    anonymous = await h.client.get("/me/keyed", headers={"cookie": "_ga=3"})
    assert [r.json()["name"] for r in (alice, bob, again, anonymous)] == [
        "Alice", "Bob", "Alice", "anonymous"
    ]  # fmt: skip
    assert status_of(again).startswith("atomcache; hit")
    assert h.calls["me"] == 3
    assert "private" in parse_cache_control(again.headers["cache-control"])
    assert "cookie" in again.headers["vary"].lower()


async def api_keys_key_the_entry(h: Harness) -> None:
    """vary_on=("x-api-key",): an entry per key, never another key's, sent private."""
    first = await h.client.get("/profile/by-key", headers={"x-api-key": "k1"})
    other = await h.client.get("/profile/by-key", headers={"x-api-key": "k2"})
    again = await h.client.get("/profile/by-key", headers={"x-api-key": "k1"})
    assert [r.json()["key"] for r in (first, other, again)] == ["k1", "k2", "k1"]
    assert status_of(again).startswith("atomcache; hit")
    assert "private" in parse_cache_control(again.headers["cache-control"])
    assert "x-api-key" in again.headers["vary"].lower()


async def head_with_credentials_is_get_without_body(h: Harness) -> None:
    """HEAD with Authorization or Cookie behaves like GET with them, minus the body."""
    for headers in ({"authorization": "Bearer a"}, {"cookie": "session=a"}):
        get = await h.client.get("/shared", headers=headers)
        head = await h.client.head("/shared", headers=headers)
        assert head.status_code == 200
        assert head.content == b""
        assert status_of(head) == status_of(get)
        assert head.headers["content-type"] == get.headers["content-type"]
    head = await h.client.head("/per-user", headers={"authorization": "Bearer a"})
    assert (head.status_code, head.content) == (200, b"")


async def requests_with_a_body_bypass(h: Harness) -> None:
    """A GET carrying a body neither reads nor fills an entry (HTTP.md 2.4)."""
    await h.client.get("/shared")
    with_body = await h.client.request("GET", "/shared", content=b"{}")
    assert status_of(with_body) == 'atomcache; fwd=bypass; detail="request body"'
    assert with_body.json()["calls"] == 2


# 5c. The application's checks run on hits (HTTP.md 0.1).
async def checks_run_on_hits(h: Harness) -> None:
    """Behind every kind of check, a stored page is served only to requests it admits."""
    valid = {"cookie": "session=valid", "x-api-key": "k1", "x-staff": "yes"}
    refused = {"cookie": "session=forged", "x-api-key": "k2", "x-staff": "no"}
    for path in h.guarded:
        first = await h.client.get(path, headers=valid)
        assert first.status_code == 200, path
        hit = await h.client.get(path, headers=valid)
        assert status_of(hit).startswith("atomcache; hit"), path
        assert hit.content == first.content
        if not path.startswith("/members/"):  # a check a cache in front would skip
            assert "private" in parse_cache_control(hit.headers["cache-control"]), path
        etag = {"if-none-match": first.headers["etag"]}
        assert (await h.client.get(path, headers={**valid, **etag})).status_code == 304
        for headers in ({}, refused, etag):
            for method in ("GET", "HEAD"):
                response = await h.client.request(method, path, headers=headers)
                assert response.status_code in (401, 403), (path, method, headers)
                assert "confidential" not in response.text
    assert h.calls["guarded"] == len(h.guarded)


async def a_failing_check_is_not_a_failing_handler(h: Harness) -> None:
    """A check answering 503 gets its 503, never the stale entry of stale_if_error."""
    valid = {"cookie": "session=valid"}
    assert (await h.client.get("/guarded/flaky", headers=valid)).status_code == 200
    h.pass_time(1.1)
    for headers in ({}, {"cookie": "session=forged"}):
        refused = await h.client.get("/guarded/flaky", headers=headers)
        assert refused.status_code == 503
        assert "confidential" not in refused.text
    assert (await h.client.get("/guarded/flaky", headers=valid)).status_code == 200


async def checks_run_for_waiters(h: Harness) -> None:
    """Requests that wait for another's computation are checked too: anonymous ones get 401."""
    path = h.guarded[0]
    valid = {"cookie": "session=valid", "x-api-key": "k1", "x-staff": "yes"}
    responses = await asyncio.gather(
        *(h.client.get(path, headers=valid if index % 2 else {}) for index in range(10))
    )
    assert [r.status_code in (401, 403) for r in responses] == [i % 2 == 0 for i in range(10)]


# 5d. The key is the target URI (HTTP.md 2.3).
async def the_host_is_part_of_the_key(h: Harness) -> None:
    """A request with another Host fills its own entry: visitors never get its links."""
    evil = await h.client.get("/link", headers={"host": "evil.test"})
    assert "evil.test" in evil.text
    assert "evil.test" not in (await h.client.get("/link")).text
    h.pass_time(1.1)  # past min_refresh_interval: no-cache refills
    await h.client.get("/link", headers={"host": "evil.test", "cache-control": "no-cache"})
    assert "evil.test" not in (await h.client.get("/link")).text
    assert h.calls["link"] == 3


async def the_forwarded_scheme_is_part_of_the_key(h: Harness) -> None:
    """Links built for https behind a proxy never reach http visitors, nor the reverse."""
    secure = await h.client.get("/link", headers={"x-forwarded-proto": "https"})
    assert 'action="https://' in secure.text
    plain = await h.client.get("/link")
    assert 'action="http://' in plain.text
    forwarded = await h.client.get("/link", headers={"x-forwarded-host": "evil.test"})
    assert status_of(forwarded).startswith("atomcache; fwd=miss")
    assert h.calls["link"] == 3


async def namespaces_group_but_never_share(h: Harness) -> None:
    """Two routes in one namespace keep their own entries; invalidation drops both."""
    one = await h.client.get("/grouped/one")
    two = await h.client.get("/grouped/two")
    assert (one.json()["route"], two.json()["route"]) == ("one", "two")
    assert await h.invalidate("/grouped/one") == 2


# 6. The key.
async def query_is_keyed_as_sent(h: Harness) -> None:
    """?offset=0&limit=3 and ?limit=3&offset=0 are two entries; sort_query=True makes one."""
    await h.client.get("/items?offset=0&limit=3")
    other_order = await h.client.get("/items?limit=3&offset=0")
    assert status_of(other_order).startswith("atomcache; fwd=miss")
    assert status_of(await h.client.get("/items?limit=3&offset=0")).startswith("atomcache; hit")
    assert h.calls["items"] == 2
    await h.client.get("/sorted?offset=0&limit=3")
    hit = await h.client.get("/sorted?limit=3&offset=0")
    assert status_of(hit).startswith("atomcache; hit")
    await h.client.get("/sorted?limit=4&offset=0")
    assert h.calls["sorted"] == 2


async def path_params_and_vary_headers_are_keys(h: Harness) -> None:
    """Different path parameters or vary_on values are different entries."""
    await h.client.get("/items/1")
    await h.client.get("/items/2")
    assert h.calls["item"] == 2
    french = await h.client.get("/lang", headers={"accept-language": "fr"})
    english = await h.client.get("/lang", headers={"accept-language": "en"})
    assert (french.json()["lang"], english.json()["lang"]) == ("fr", "en")
    assert "Accept-Language" in french.headers["vary"]
    assert h.calls["lang"] == 2


async def dependencies_are_not_keys(h: Harness) -> None:
    """An injected dependency (a new object per request) does not split the entry."""
    await h.client.get("/deps")
    hit = await h.client.get("/deps")
    assert status_of(hit).startswith("atomcache; hit")
    assert h.calls["deps"] == 1


# 7. ETags.
async def etag_is_strong_and_from_the_body(h: Harness) -> None:
    """The ETag is strong, quoted and the same for the same body, on hits too."""
    first = await h.client.get("/items/3")
    etag = first.headers["etag"]
    assert etag == make_etag(first.content)
    assert etag.startswith('"')
    assert not etag.startswith("W/")
    assert (await h.client.get("/items/3")).headers["etag"] == etag


# 8. If-None-Match.
async def if_none_match_gives_304(h: Harness) -> None:
    """A matching If-None-Match (weak, list or *) gives 304 with the validator fields only."""
    first = await h.client.get("/items/4")
    etag = first.headers["etag"]
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        response = await h.client.get("/items/4", headers={"if-none-match": header})
        assert response.status_code == 304, header
        assert response.content == b""
        assert response.headers["etag"] == etag
        assert "max-age=" in response.headers["cache-control"]
        assert len(response.headers.get_list("date")) == 1
        assert "content-type" not in response.headers
        assert response.headers.get("content-length", "0") == "0"
    other = await h.client.get("/items/4", headers={"if-none-match": '"other"'})
    assert other.status_code == 200
    assert h.calls["item"] == 1


async def if_none_match_on_a_fresh_computation(h: Harness) -> None:
    """If-None-Match is evaluated on a miss too: the first request can be a 304."""
    body = (await h.client.get("/constant")).content
    await h.cache.clear()
    response = await h.client.get("/constant", headers={"if-none-match": make_etag(body)})
    assert response.status_code == 304
    assert status_of(response).startswith("atomcache; fwd=miss; stored")
    assert h.calls["constant"] == 2


# 9. The status wins.
async def errors_never_give_304(h: Harness) -> None:
    """A failing handler's status is sent even with If-None-Match: *."""
    response = await h.client.get("/status/500", headers={"if-none-match": "*"})
    assert response.status_code == 500


# 10. Invalidated entries are not validated by old ETags.
async def old_etag_after_change_gives_200(h: Harness) -> None:
    """After invalidation and a different body, the old ETag no longer matches."""
    old = await h.client.get("/items/6")
    h.flags["version"] = 2
    assert await h.invalidate("/items/{item_id}", path_params={"item_id": 6}) == 1
    response = await h.client.get("/items/6", headers={"if-none-match": old.headers["etag"]})
    assert response.status_code == 200
    assert response.json()["item"]["version"] == 2
    assert response.headers["etag"] != old.headers["etag"]


# 11. Freshness fields.
async def preconditions_give_412(h: Harness) -> None:
    """A failing If-Match or If-Unmodified-Since gives 412, first (RFC 9110 13.2.2)."""
    first = await h.client.get("/dated")
    etag = first.headers["etag"]
    assert etag == '"v1"'  # the handler's own validator is kept
    for headers, expected in (
        ({"if-match": '"other"'}, 412),
        ({"if-match": f'"other", {etag}'}, 200),
        ({"if-match": "*"}, 200),
        ({"if-match": f"W/{etag}"}, 412),  # strong comparison
        ({"if-unmodified-since": "Sat, 01 Jan 2000 00:00:00 GMT"}, 412),
        ({"if-unmodified-since": "Fri, 01 Jan 2100 00:00:00 GMT"}, 200),
        ({"if-match": '"other"', "if-none-match": etag}, 412),
        ({"if-modified-since": "Fri, 01 Jan 2100 00:00:00 GMT"}, 304),
        ({"if-modified-since": "Sat, 01 Jan 2000 00:00:00 GMT"}, 200),
    ):
        response = await h.client.get("/dated", headers=headers)
        assert response.status_code == expected, headers
    assert h.calls["dated"] == 1


async def per_request_fields_are_not_replayed(h: Harness) -> None:
    """X-Request-ID, traceparent and Server-Timing of the filling request are not stored."""
    first = await h.client.get("/dated")
    assert first.headers["x-request-id"] == "fill"
    hit = await h.client.get("/dated")
    assert status_of(hit).startswith("atomcache; hit")
    assert {"x-request-id", "traceparent", "server-timing"}.isdisjoint(hit.headers)
    assert hit.headers["last-modified"] == first.headers["last-modified"]


async def the_handlers_cache_control_is_the_policy(h: Harness) -> None:
    """The handler's own Cache-Control is kept, its max-age capped at what is left."""
    response = await h.client.get("/dated")
    directives = parse_cache_control(response.headers["cache-control"])
    assert "public" in directives
    assert "must-revalidate" in directives
    assert int(directives["max-age"] or 0) <= 30
    assert response.headers.get_list("cache-control") == [response.headers["cache-control"]]


async def hits_carry_remaining_max_age_and_no_age(h: Harness) -> None:
    """A hit says max-age=<whole seconds left> and no Age (HTTP.md 5.1).

    A cache in front that honours Age computes `max-age - Age`: sending both would count
    the entry's age twice.
    """
    await h.client.get("/items/8")
    h.pass_time(1.1)
    hit = await h.client.get("/items/8")
    max_age = int(parse_cache_control(hit.headers["cache-control"])["max-age"] or 0)
    assert 57 <= max_age <= 58
    assert "age" not in hit.headers


async def configured_directives_are_capped(h: Harness) -> None:
    """The route's own Cache-Control is sent, its max-age/s-maxage capped at what is left."""
    response = await h.client.get("/public")
    directives = parse_cache_control(response.headers["cache-control"])
    assert "public" in directives
    assert int(directives["max-age"] or 0) <= 60
    assert int(directives["s-maxage"] or 0) <= 60


# 12. Cache-Status.
async def cache_status_says_what_happened(h: Harness) -> None:
    """miss-stored, hit with ttl, and fwd=request under no-cache."""
    assert status_of(await h.client.get("/items/9")).startswith("atomcache; fwd=miss; stored")
    hit = status_of(await h.client.get("/items/9"))
    assert hit.startswith("atomcache; hit; ttl=")
    h.pass_time(1.1)  # past min_refresh_interval
    forced = await h.client.get("/items/9", headers={"cache-control": "no-cache"})
    assert status_of(forced).startswith("atomcache; fwd=request; stored")


# 13. Request no-cache.
async def no_cache_recomputes_and_stores(h: Harness) -> None:
    """no-cache and max-age=0 recompute and store the result.

    On a route with `min_refresh_interval=0`: the interval itself is
    `no_cache_is_coalesced`'s.
    """
    await h.client.get("/refresh/now")
    for header in ("no-cache", "max-age=0", "NO-CACHE", "no-cache, no-store"):
        response = await h.client.get("/refresh/now", headers={"cache-control": header})
        assert status_of(response).startswith("atomcache; fwd=request"), header
    assert h.calls["refresh-now"] == 5
    hit = await h.client.get("/refresh/now")
    assert status_of(hit).startswith("atomcache; hit")
    assert hit.json()["calls"] == 4  # the no-store request's result was not stored


async def no_cache_is_coalesced(h: Harness) -> None:
    """Concurrent no-cache requests share one computation; within the interval, none."""
    await h.client.get("/refresh")
    h.pass_time(0.6)
    responses = await asyncio.gather(
        *(h.client.get("/refresh", headers={"cache-control": "no-cache"}) for _ in range(10))
    )
    assert {response.json()["calls"] for response in responses} == {2}
    again = await h.client.get("/refresh", headers={"cache-control": "no-cache"})
    assert again.json()["calls"] == 2
    assert h.calls["refresh"] == 2


async def no_cache_ignored_by_policy(h: Harness) -> None:
    """With no_cache="ignore" the stored entry answers no-cache requests."""
    await h.client.get("/ignore")
    response = await h.client.get("/ignore", headers={"cache-control": "no-cache"})
    assert status_of(response).startswith("atomcache; hit")
    assert h.calls["ignore"] == 1


# 14. Request no-store.
async def no_store_reads_but_does_not_write(h: Harness) -> None:
    """no-store: a miss is computed and not stored; a stored entry is served."""
    nostore = {"cache-control": "no-store"}
    await h.client.get("/items/10", headers=nostore)
    await h.client.get("/items/10", headers=nostore)
    assert h.calls["item"] == 2
    await h.client.get("/items/10")
    served = await h.client.get("/items/10", headers=nostore)
    assert status_of(served).startswith("atomcache; hit")
    assert h.calls["item"] == 3


# 15. only-if-cached.
async def only_if_cached(h: Harness) -> None:
    """A miss answers 504 without running the handler; a hit is served."""
    only = {"cache-control": "only-if-cached"}
    assert (await h.client.get("/items/11", headers=only)).status_code == 504
    assert h.calls["item"] == 0
    await h.client.get("/items/11")
    assert (await h.client.get("/items/11", headers=only)).status_code == 200
    assert h.calls["item"] == 1


# 17. Single flight.
async def concurrent_requests_run_the_handler_once(h: Harness) -> None:
    """50 concurrent requests for a cold key: one handler run, one body, one ETag."""
    responses = await asyncio.gather(*(h.client.get("/slow") for _ in range(50)))
    assert h.calls["slow"] == 1
    assert {response.content for response in responses} == {responses[0].content}
    assert {response.headers["etag"] for response in responses} == {responses[0].headers["etag"]}


# 18. stale-while-revalidate.
async def stale_is_served_while_one_refresh_runs(h: Harness) -> None:
    """An expired entry inside stale_ttl is served at once; one refresh follows."""
    await h.client.get("/stale")
    h.pass_time(1.1)
    started = time.monotonic()
    responses = await asyncio.gather(*(h.client.get("/stale") for _ in range(5)))
    assert time.monotonic() - started < 0.8  # nobody waited for the 1 s refresh
    assert {response.json()["calls"] for response in responses} == {1}
    assert all("fwd=stale" in status_of(response) for response in responses)
    assert all("age" not in response.headers for response in responses)
    for _ in range(150):
        if (await h.client.get("/stale")).json()["calls"] == 2:
            break
        await asyncio.sleep(0.02)
    assert h.calls["stale"] == 2


# 19. stale-if-error.
async def stale_if_error_serves_the_old_entry(h: Harness) -> None:
    """A failing refresh inside stale_if_error serves stale; outside, the error, nothing stored."""
    good = await h.client.get("/flaky")
    h.flags["fail"] = True
    h.pass_time(1.1)
    served = await h.client.get("/flaky")
    assert served.status_code == 200
    assert served.content == good.content
    h.pass_time(1.0)
    failed = await h.client.get("/flaky")
    assert failed.status_code == 500
    h.flags["fail"] = False
    assert (await h.client.get("/flaky")).json()["calls"] == 4


# 20. Tags.
async def tags_invalidate_entries(h: Harness) -> None:
    """Static and request-computed tags drop exactly their entries."""
    for item in (1, 2):
        await h.client.get(f"/tagged/{item}")
    assert await h.cache.invalidate_tags("item:1") == 1
    await h.client.get("/tagged/1")
    await h.client.get("/tagged/2")
    assert h.calls["tagged"] == 3
    assert await h.cache.invalidate_tags("tagged") == 2


# 21. Invalidation helper.
async def helper_drops_one_entry_or_a_route(h: Harness) -> None:
    """The helper drops one parameter set's entry, or every entry of a route."""
    await h.client.get("/items", params={"limit": 1})
    await h.client.get("/items", params={"limit": 2})
    assert await h.invalidate("/items", query={"limit": 1}) == 1
    assert status_of(await h.client.get("/items", params={"limit": 2})).startswith("atomcache; hit")
    assert await h.invalidate("/items") == 1
    assert status_of(await h.client.get("/items", params={"limit": 2})).startswith(
        "atomcache; fwd=miss"
    )
    assert h.calls["items"] == 3
    await h.client.get("/items/5")  # the template as declared, its converter included
    assert await h.invalidate("/items/{item_id:int}", path_params={"item_id": 5}) == 1


async def helper_drops_one_callers_entries(h: Harness) -> None:
    """With a request's fields, the helper drops that caller's entries, not everyone's."""
    alice, bob = {"authorization": "Bearer alice"}, {"authorization": "Bearer bob"}
    for headers in (alice, bob):
        await h.client.get("/per-user", headers=headers)
        await h.client.get("/per-user", params={"page": 2}, headers=headers)
    assert await h.invalidate("/per-user", headers={"Authorization": "Bearer alice"}) == 2
    assert status_of(await h.client.get("/per-user", headers=bob)).startswith("atomcache; hit")
    again = await h.client.get("/per-user", headers=alice)
    assert status_of(again).startswith("atomcache; fwd=miss")
    assert h.calls["per-user"] == 5
    for user in ("alice", "bob"):  # a route with path parameters: every entry of the caller
        for item in (1, 2):
            await h.client.get(f"/by-user/{item}", headers={"authorization": f"Bearer {user}"})
    assert await h.invalidate("/by-user/{item_id}", headers=alice) == 2
    assert await h.invalidate("/by-user/{item_id}", path_params={"item_id": 1}, headers=bob) == 1
    hit = await h.client.get("/by-user/2", headers=bob)
    assert status_of(hit).startswith("atomcache; hit")
    for user in ("alice", "bob"):  # keyed on two fields: one of them names the caller
        for language in ("en", "fr", None):
            fields = {"authorization": f"Bearer {user}", "accept-language": language or ""}
            await h.client.get("/per-user/lang", headers={k: v for k, v in fields.items() if v})
    assert await h.invalidate("/per-user/lang", headers=alice) == 3
    kept = await h.client.get("/per-user/lang", headers={**bob, "accept-language": "fr"})
    assert status_of(kept).startswith("atomcache; hit")


SCENARIOS: list[Callable[[Harness], Awaitable[None]]] = [
    methods_get_and_head_only,
    head_first_fills_the_get_entry,
    errors_are_never_stored,
    final_bytes_are_stored_and_replayed,
    stored_headers_are_replayed,
    set_cookie_responses_are_not_stored,
    uncacheable_directives_are_not_stored,
    streaming_passes_through,
    oversized_bodies_are_served_not_stored,
    poisoned_requests_do_not_poison_the_cache,
    concurrent_waiters_are_released_by_an_oversized_body,
    background_tasks_run_after_the_response,
    the_responses_vary_selects_the_entry,
    vary_star_is_never_stored,
    stream_joiners_start_at_once,
    authorized_requests_bypass_shared_entries,
    per_user_routes_key_on_authorization,
    cookies_bypass_shared_entries,
    personal_pages_never_cross_users,
    named_cookies_key_the_entry,
    api_keys_key_the_entry,
    head_with_credentials_is_get_without_body,
    requests_with_a_body_bypass,
    checks_run_on_hits,
    checks_run_for_waiters,
    a_failing_check_is_not_a_failing_handler,
    the_host_is_part_of_the_key,
    the_forwarded_scheme_is_part_of_the_key,
    namespaces_group_but_never_share,
    query_is_keyed_as_sent,
    path_params_and_vary_headers_are_keys,
    dependencies_are_not_keys,
    etag_is_strong_and_from_the_body,
    if_none_match_gives_304,
    if_none_match_on_a_fresh_computation,
    errors_never_give_304,
    old_etag_after_change_gives_200,
    hits_carry_remaining_max_age_and_no_age,
    configured_directives_are_capped,
    preconditions_give_412,
    per_request_fields_are_not_replayed,
    the_handlers_cache_control_is_the_policy,
    cache_status_says_what_happened,
    no_cache_recomputes_and_stores,
    no_cache_is_coalesced,
    no_cache_ignored_by_policy,
    no_store_reads_but_does_not_write,
    only_if_cached,
    concurrent_requests_run_the_handler_once,
    stale_is_served_while_one_refresh_runs,
    stale_if_error_serves_the_old_entry,
    tags_invalidate_entries,
    helper_drops_one_entry_or_a_route,
    helper_drops_one_callers_entries,
]


# 22. Redis down: fail open.
async def redis_down_fails_open(h: Harness) -> None:
    """With Redis unreachable every request is answered by the handler, never a 500."""
    for _ in range(3):
        response = await h.client.get("/items/1")
        assert response.status_code == 200
        assert response.json()["item"]["id"] == 1
        assert "backend unavailable" in status_of(response)
    assert h.calls["item"] == 3


async def mounted_apps_never_share(client: httpx.AsyncClient, calls: Counter[str]) -> None:
    """Two apps mounted at /a and /b on one cache keep their own entries.

    The app at /b checks every request at app level: its check runs on its hits.
    """
    valid = {"cookie": "session=valid"}
    for _ in range(2):
        assert (await client.get("/a/items")).json() == {"app": "a", "calls": 1}
        assert (await client.get("/b/items", headers=valid)).json() == {"app": "b", "calls": 1}
    hit = await client.get("/b/items", headers=valid)
    assert status_of(hit).startswith("atomcache; hit")
    assert (await client.get("/b/items")).status_code == 401
    assert status_of(await client.get("/a/items")).startswith("atomcache; hit")
    assert calls == {"a": 1, "b": 1}


async def middleware_around_the_cache_applies_to_hits(
    client: httpx.AsyncClient, calls: Counter[str]
) -> None:
    """Compression and CORS give a hit exactly what a miss would get (HTTP.md 0.3).

    A client that did not ask for gzip never gets it; an entry never carries another
    request's `Access-Control-Allow-Origin`.
    """
    for _ in range(2):
        for encoding in ("gzip", "identity"):
            for origin in ("https://a.example", "https://b.example"):
                headers = {"accept-encoding": encoding, "origin": origin}
                response = await client.get("/text", headers=headers)
                assert response.text == "x" * 2000
                assert response.headers.get("content-encoding") == (
                    "gzip" if encoding == "gzip" else None
                ), headers
                assert response.headers["access-control-allow-origin"] == origin
    hit = await client.get("/text", headers={"accept-encoding": "identity"})
    assert "hit" in hit.headers["cache-status"]
    assert calls["text"] <= 4  # once per variant at most, or once


#: The routes behind the app's own checks that every adapter has (HTTP.md 0.1).
GUARDED = (
    "/guarded/route",
    "/guarded/param",
    "/guarded/api-key",
    "/guarded/decorated",
    "/guarded/router",
    "/guarded/sync",
    "/members/report",
)

#: Where the scenario routes are declared, per backend: every behaviour runs on app
#: routes, on an included router with a prefix and on nested routers, and on the
#: memory backend and on Redis.
LAYOUTS = {"memory": ("app", ""), "redis": ("router", "/api"), "redis+local": ("nested", "/api/v1")}


def adapter_tests(
    build: Callable[[Cache, Counter[str], dict[str, Any], str], tuple[Any, Invalidate]],
    framework: str,
    guarded: tuple[str, ...],
    build_mounted: Callable[[Cache, Counter[str]], Any],
    build_compressed: Callable[[Cache, Counter[str]], Any],
) -> tuple[Any, Any, Any, Any, Any]:
    """The fixture and tests an adapter's module exposes, given how it builds the app.

    `build(cache, calls, flags, layout)` returns the ASGI app with the routes above,
    declared as `layout` says (`"app"`, `"router"` at `/api`, `"nested"` at
    `/api/v1`), and its invalidation helper. `guarded` lists its routes behind checks.
    `build_mounted(cache, calls)` returns the two apps of `mounted_apps_never_share`,
    `build_compressed(cache, calls)` the app of
    `middleware_around_the_cache_applies_to_hits`. Use as `harness, test_http_behaviour,
    test_redis_down_fails_open, test_mounts, test_middleware = adapter_tests(build, "X",
    guarded, build_mounted, build_compressed)`.
    """

    @contextlib.asynccontextmanager
    async def running(
        cache: Cache, layout: str = "app", prefix: str = ""
    ) -> AsyncIterator[Harness]:
        calls: Counter[str] = Counter()
        flags: dict[str, Any] = {}
        app, invalidate = build(cache, calls, flags, layout)

        def prefixed(route: str, **parameters: Any) -> Awaitable[int]:
            return invalidate(prefix + route, **parameters)

        async with (
            serve_asgi(app) as base_url,
            httpx.AsyncClient(base_url=base_url + prefix, timeout=30) as client,
        ):
            with time_machine.travel(time.time(), tick=True) as clock:
                yield Harness(client, cache, prefixed, calls, flags, guarded, clock)

    @pytest.fixture(params=list(LAYOUTS))
    async def harness(request: pytest.FixtureRequest, namespace: str) -> AsyncIterator[Harness]:
        """The app on memory (app routes), Redis (a router) and Redis + local tier (nested)."""
        if request.param == "memory":
            cache = Cache.from_url("memory://", namespace=namespace)
        else:
            local_ttl = 30.0 if request.param == "redis+local" else None
            url = request.getfixturevalue("redis_url")
            cache = Cache.from_url(url, namespace=namespace, local_ttl=local_ttl)
        async with running(cache, *LAYOUTS[request.param]) as harness:
            yield harness

    @pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda scenario: scenario.__name__)
    async def test_http_behaviour(
        harness: Harness, scenario: Callable[[Harness], Awaitable[None]]
    ) -> None:
        await scenario(harness)

    async def test_redis_down_fails_open(namespace: str) -> None:
        with RedisServer() as server:
            url = server.url
        cache = Cache.from_url(url, namespace=namespace, socket_connect_timeout=0.2)
        async with running(cache) as harness:
            await redis_down_fails_open(harness)

    async def on_own_app(
        build_own: Callable[[Cache, Counter[str]], Any],
        scenario: Callable[[httpx.AsyncClient, Counter[str]], Awaitable[None]],
        url: str,
        namespace: str,
    ) -> None:
        calls: Counter[str] = Counter()
        cache = Cache.from_url(url, namespace=namespace)
        async with (
            cache,  # mounted apps get no lifespan: this closes it in any case
            serve_asgi(build_own(cache, calls)) as base_url,
            httpx.AsyncClient(base_url=base_url, timeout=30) as client,
        ):
            await scenario(client, calls)

    @pytest.mark.parametrize("backend", ["memory", "redis"])
    async def test_mounts(backend: str, request: pytest.FixtureRequest, namespace: str) -> None:
        url = "memory://" if backend == "memory" else request.getfixturevalue("redis_url")
        await on_own_app(build_mounted, mounted_apps_never_share, url, namespace)

    @pytest.mark.parametrize("backend", ["memory", "redis"])
    async def test_middleware(backend: str, request: pytest.FixtureRequest, namespace: str) -> None:
        url = "memory://" if backend == "memory" else request.getfixturevalue("redis_url")
        scenario = middleware_around_the_cache_applies_to_hits
        await on_own_app(build_compressed, scenario, url, namespace)

    test_middleware.__doc__ = middleware_around_the_cache_applies_to_hits.__doc__
    test_mounts.__doc__ = mounted_apps_never_share.__doc__
    test_http_behaviour.__doc__ = (
        f"Each behaviour of HTTP.md holds for {framework} (the scenario's docstring says which)."
    )
    test_redis_down_fails_open.__doc__ = (
        f"With Redis gone, {framework}'s cached routes are answered by their handler, never a 500."
    )
    return harness, test_http_behaviour, test_redis_down_fails_open, test_mounts, test_middleware


#: What `ask_each_outcome` makes `atomcache_http_responses_total` count, by route,
#: outcome and reason.
EACH_OUTCOME = {
    ("/items/{item_id}", "computed", ""): 1,
    ("/items/{item_id}", "hit", ""): 2,
    ("/items/{item_id}", "bypass", "authorization"): 1,
    ("/broken", "uncached", "error"): 1,
}


async def ask_each_outcome(client: httpx.AsyncClient) -> None:
    """Ask for every outcome of a response: computed, hit, 304, bypassed, 5xx unstored.

    `/items/1` is a public cached route, `/broken` a cached route answering 503.
    """
    first = await client.get("/items/1")
    assert (await client.get("/items/1")).headers["cache-status"].startswith("atomcache; hit")
    etag = first.headers["etag"]
    assert (await client.get("/items/1", headers={"if-none-match": etag})).status_code == 304
    bypassed = await client.get("/items/1", headers={"authorization": "Bearer x"})
    assert "bypass" in bypassed.headers["cache-status"]
    assert (await client.get("/broken")).status_code == 503
