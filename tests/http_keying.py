"""What a key is made of, written once and run against every adapter (HTTP.md 2.3).

Each adapter's test module builds a small app with the routes below (same paths, same
behaviour) and runs every scenario here through `keying_tests`. Handlers count their
calls in `calls[name]` and put the count in the body as "calls".

Routes (all `@cached(ttl=60)` unless said otherwise):

- GET /echo/{item} -> "echo": {"item", "url": the request's URL, "host": its Host field,
  "root": the scope's `root_path`}
- GET /sorted (sort_query=True) -> "sorted": {"url"}
- GET /reset/{token}?api_key -> "reset": {"token", "api_key"}
- GET /tenant -> "tenant": {"tenant"}, read from a declared `X-Tenant` header
- GET /who -> "who": {"email"}, read by a dependency from a declared
  `X-Auth-Request-Email` header (oauth2-proxy's)
- GET /token -> "token": {"token"}, read from a declared `X-Token` header
- GET /theme -> "theme": {"theme"}, read from a declared `theme` cookie
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import pytest
from redis.asyncio import Redis

from atomcache_core import Cache
from atomcache_core.http import parse_cache_control
from support.scopes import http_scope
from support.servers import serve_asgi

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, MutableMapping

    from atomcache_core.asgi import ASGIApp, Receive, Scope, Send


class Build(Protocol):
    """Builds the adapter's keying app on `cache`; returns it and its invalidation helper."""

    def __call__(
        self, cache: Cache, calls: Counter[str]
    ) -> tuple[Any, Callable[..., Awaitable[int]]]:
        """The app and `invalidate(route, path_params=..., query=...)`."""
        ...


@dataclass
class Reply:
    """A response as the ASGI app sent it."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body, parsed."""
        return json.loads(self.body)

    @property
    def cache_status(self) -> str:
        """Its Cache-Status field."""
        return self.headers.get("cache-status", "")


async def ask(
    app: ASGIApp,
    path: str,
    query: bytes = b"",
    *,
    headers: Iterable[tuple[str, str]] = (),
    root_path: str = "",
    raw_path: bytes | None = None,
) -> Reply:
    """Send one GET to `app` with the scope exactly as given: query bytes are not encoded.

    The defaults model hypercorn, whose `path` and `raw_path` leave `root_path` out.
    """
    fields = [(name.encode(), value.encode("latin-1")) for name, value in headers]
    scope = http_scope(path, query, headers=fields, raw_path=raw_path, root_path=root_path)
    messages: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        messages.append(message)

    await app(scope, receive, send)
    start = next(message for message in messages if message["type"] == "http.response.start")
    reply_headers: dict[str, str] = {}
    for name, value in start["headers"]:
        reply_headers[name.decode("latin-1").lower()] = value.decode("latin-1")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return Reply(start["status"], reply_headers, body)


class RewriteOriginalUrl:
    """ASGI middleware honouring `X-Original-URL` as IIS-style proxies send it.

    It rewrites the scope's `path` (what routers route on) and leaves `raw_path`.
    """

    def __init__(self, app: ASGIApp) -> None:
        """Wrap `app`."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route on the header's path when the request has one."""
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"x-original-url":
                    scope = {**scope, "path": value.decode("latin-1")}
        await self.app(scope, receive, send)


# Item: the key is what the router routed on.
async def a_rewritten_path_is_keyed_as_routed(build: Build) -> None:
    """A path rewritten by a middleware never stores one item's page under another's URL."""
    calls: Counter[str] = Counter()
    app, _ = build(Cache(), calls)
    async with (
        serve_asgi(RewriteOriginalUrl(app)) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=30) as client,
    ):
        lure = await client.get("/echo/1", headers={"x-original-url": "/echo/2"})
        assert lure.json()["item"] == "2"
        victim = await client.get("/echo/1")
        assert victim.json()["item"] == "1", victim.headers["cache-status"]
        again = await client.get("/echo/2")
        assert again.json()["item"] == "2"


async def deployments_behind_a_prefix_stripping_proxy_never_share(build: Build) -> None:
    """Two mount points on one cache keep their own entries, with uvicorn and hypercorn."""
    cache, calls = Cache(), Counter[str]()
    first, _ = build(cache, calls)
    second, _ = build(cache, calls)
    # hypercorn: `path` and `raw_path` without the prefix, which is in `root_path` only
    one = await ask(first, "/echo/1", root_path="/one")
    two = await ask(second, "/echo/1", root_path="/two")
    assert one.json()["root"] == "/one"
    assert two.json()["root"] == "/two", two.cache_status
    assert calls["echo"] == 2
    # uvicorn, a real one per deployment: the prefix in `path`, `raw_path` and `root_path`
    calls.clear()
    cache = Cache()
    async with contextlib.AsyncExitStack() as stack:
        urls = []
        for root_path in ("/one", "/two"):
            app, _ = build(cache, calls)
            urls.append(await stack.enter_async_context(serve_asgi(app, root_path=root_path)))
        for base_url, root_path in zip(urls, ("/one", "/two"), strict=True):
            async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
                page = await client.get("/echo/1")
            assert page.json()["root"] == root_path, page.headers["cache-status"]
    assert calls["echo"] == 2


# Item: the host as sent.
async def the_host_is_keyed_as_sent(build: Build) -> None:
    """A visitor never gets the Host spelling another visitor sent."""
    calls: Counter[str] = Counter()
    app, _ = build(Cache(), calls)
    first = await ask(app, "/echo/1", headers=[("host", "Shop.Example")])
    assert first.json()["host"] == "Shop.Example"
    second = await ask(app, "/echo/1", headers=[("host", "shop.example")])
    assert second.json()["host"] == "shop.example", second.cache_status
    again = await ask(app, "/echo/1", headers=[("host", "Shop.Example")])
    assert again.cache_status.startswith("atomcache; hit")
    assert calls["echo"] == 2


# Item: sort_query keeps each parameter's bytes.
async def sorted_queries_keep_their_bytes(build: Build) -> None:
    """`sort_query` reorders parameters; a raw `<script>` never shares the encoded one's entry."""
    calls: Counter[str] = Counter()
    app, _ = build(Cache(), calls)
    raw = await ask(app, "/sorted", b"q=<script>&a=1")
    encoded = await ask(app, "/sorted", b"a=1&q=%3Cscript%3E")
    assert "%3Cscript%3E" in encoded.json()["url"], encoded.cache_status
    assert "<script>" in raw.json()["url"]
    for query in (b"q=%FF", b"q=%FE", b"q=%C0%BC"):
        assert query.decode() in (await ask(app, "/sorted", query)).json()["url"]
    reordered = await ask(app, "/sorted", b"a=1&q=<script>")
    assert reordered.cache_status.startswith("atomcache; hit")
    assert "<script>" in reordered.json()["url"]
    assert calls["sorted"] == 5


# Item: no credential in a key name.
async def no_path_or_query_value_reaches_redis_in_clear(build: Build, redis_url: str) -> None:
    """A reset token in the path, an API key in the query: no key name or tag holds them."""
    namespace = f"keying-{id(build):x}"
    calls: Counter[str] = Counter()
    async with Cache.from_url(redis_url, namespace=namespace) as cache:
        app, invalidate = build(cache, calls)
        for _ in range(2):
            reply = await ask(app, "/reset/s3cret-reset", b"api_key=k3y-secret")
            assert reply.json()["token"] == "s3cret-reset"  # noqa: S105 - a made-up one
        assert calls["reset"] == 1
        async with Redis.from_url(redis_url, decode_responses=True) as redis:
            names = [str(name) async for name in redis.scan_iter(f"atomcache:{namespace}:*")]
            for name in list(names):
                if await redis.type(name) == "set":
                    names += [str(member) for member in await redis.smembers(name)]
            assert any("/reset/{token}" in name for name in names), names
            for secret in ("s3cret", "k3y"):
                assert not any(secret in name for name in names), names
            await redis.delete(*[name for name in names if name.startswith("atomcache:")])
        assert calls["reset"] == 1
        await ask(app, "/reset/s3cret-reset", b"api_key=k3y-secret")
        dropped = await invalidate("/reset/{token}", path_params={"token": "s3cret-reset"})
        assert dropped == 1


# Item: what the route declares it reads is keyed.
async def declared_headers_are_keyed(build: Build) -> None:
    """Headers the route or its dependencies declare split the entry and are sent in Vary."""
    calls: Counter[str] = Counter()
    app, _ = build(Cache(), calls)
    for path, field, answer in (
        ("/tenant", "x-tenant", "tenant"),
        ("/who", "x-auth-request-email", "email"),
        ("/token", "x-token", "token"),
    ):
        first = await ask(app, path, headers=[(field, "alice")])
        assert first.json()[answer] == "alice"
        other = await ask(app, path, headers=[(field, "bob")])
        assert other.json()[answer] == "bob", (path, other.cache_status)
        again = await ask(app, path, headers=[(field, "alice")])
        assert again.json()[answer] == "alice"
        assert again.cache_status.startswith("atomcache; hit"), path
        assert field in again.headers["vary"].lower(), path
        assert calls[answer] == 2, path


async def declared_cookies_are_keyed(build: Build) -> None:
    """A cookie the route declares keys the entry: other cookies neither split nor bypass it."""
    calls: Counter[str] = Counter()
    app, _ = build(Cache(), calls)
    dark = await ask(app, "/theme", headers=[("cookie", "theme=dark")])
    light = await ask(app, "/theme", headers=[("cookie", "_ga=1; theme=light")])
    again = await ask(app, "/theme", headers=[("cookie", "theme=dark; _ga=2")])
    assert [reply.json()["theme"] for reply in (dark, light, again)] == ["dark", "light", "dark"]
    assert again.cache_status.startswith("atomcache; hit")
    assert "private" in parse_cache_control(again.headers["cache-control"])
    assert "cookie" in again.headers["vary"].lower()
    assert calls["theme"] == 2


SCENARIOS: list[Callable[[Build], Awaitable[None]]] = [
    a_rewritten_path_is_keyed_as_routed,
    deployments_behind_a_prefix_stripping_proxy_never_share,
    the_host_is_keyed_as_sent,
    sorted_queries_keep_their_bytes,
    declared_headers_are_keyed,
    declared_cookies_are_keyed,
]


def keying_tests(build: Build, framework: str) -> tuple[Any, Any]:
    """The tests an adapter's module exposes: `test_keying, test_keys_hold_no_secret`."""

    @pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda scenario: scenario.__name__)
    async def test_keying(scenario: Callable[[Build], Awaitable[None]]) -> None:
        await scenario(build)

    async def test_keys_hold_no_secret(redis_url: str) -> None:
        await no_path_or_query_value_reaches_redis_in_clear(build, redis_url)

    test_keying.__doc__ = f"Each keying rule holds for {framework} (the scenario says which)."
    test_keys_hold_no_secret.__doc__ = no_path_or_query_value_reaches_redis_in_clear.__doc__
    return test_keying, test_keys_hold_no_secret
