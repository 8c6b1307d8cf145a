"""The pure ASGI middleware that serves FastAPI's cached routes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import Request  # noqa: TC002 - FastAPI reads get_cache's annotation at run time
from starlette.routing import BaseRoute, Match

from atomcache_core._singleflight import Uncacheable
from atomcache_core.asgi import HttpCache, ResponseCapture, RouteOptions, cached, route_options
from atomcache_core.exceptions import AtomCacheError
from atomcache_fastapi._migration import CLAIM, CachedResponse, Claim, serve_cached_response

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from fastapi import FastAPI
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from atomcache_core import Cache

__all__ = [
    "AtomCacheMiddleware",
    "cached",
    "get_cache",
    "invalidate",
    "setup_cache",
]  # cached: from the core

_LOOKUP_LIMIT = 4096


def setup_cache(app: FastAPI, cache: Cache) -> None:
    """Serve `app`'s `@cached` routes from `cache`; the cache closes with the app.

    Adds `AtomCacheMiddleware` and keeps the cache in `app.state.atomcache`, where
    `get_cache` (a dependency) finds it.
    """
    app.state.atomcache = cache
    app.add_middleware(AtomCacheMiddleware, cache=cache, routes_of=app)
    app.add_exception_handler(CachedResponse, serve_cached_response)


def get_cache(request: Request) -> Cache:
    """FastAPI dependency giving the cache set up for the app: `Depends(get_cache)`."""
    cache: Cache = request.app.state.atomcache
    return cache


async def invalidate(
    app: FastAPI,
    route: str | Callable[..., Any],
    *,
    path_params: dict[str, Any] | None = None,
    query: dict[str, Any] | Iterable[tuple[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> int:
    """Drop the cached response of one request of a route, or all of the route's.

    `route` is the path template (`"/items/{item_id}"`) or the endpoint function.
    With `path_params` and/or `query`, only the entry those select is dropped (give
    the `vary_on` request `headers` too, if the route has any); with neither, every
    entry of the route. Returns how many entries were dropped.
    """
    routes = (
        (str(getattr(candidate, "path", "")), getattr(candidate, "endpoint", None))
        for candidate in app.router.routes
    )
    http_cache = HttpCache(app.state.atomcache)
    return await http_cache.invalidate_route(
        routes, route, path_params=path_params, query=query, headers=headers
    )


class AtomCacheMiddleware:
    """Pure ASGI middleware: answers requests of `@cached` routes through the cache.

    Other requests pass through, unless their handler claimed an entry through
    `ResponseCache.raise_try`: then their final response is stored (and sent the way
    `@cached` routes send it). On lifespan shutdown it closes the cache.
    """

    def __init__(self, app: ASGIApp, *, cache: Cache, routes_of: FastAPI) -> None:
        """Wrap `app`; look routes up in `routes_of`."""
        self.app = app
        self.cache = cache
        self.http_cache = HttpCache(cache)
        self._routes_of = routes_of
        self._lookups: dict[
            tuple[str, str], tuple[BaseRoute, RouteOptions, dict[str, Any]] | None
        ] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve cached routes; pass everything else on."""
        if scope["type"] == "http":
            found = self._lookup(scope)
            if found is not None:
                route, options, path_params = found
                await self.http_cache.serve(
                    scope,
                    receive,
                    send,
                    self.app,
                    options=options,
                    route=str(getattr(route, "path", "")),
                    path_params=path_params,
                )
                return
            await self._storing_claims(scope, receive, send)
            return
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._closing_on_shutdown(send))
            return
        await self.app(scope, receive, send)

    def _lookup(self, scope: Scope) -> tuple[BaseRoute, RouteOptions, dict[str, Any]] | None:
        """The cached route a request goes to, as the router would choose it."""
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            return None
        memo = (method, scope["path"])
        if memo in self._lookups:
            return self._lookups[memo]
        found = None
        for route in self._routes_of.router.routes:
            match, child = route.matches(scope)
            head_of_get = (
                match is Match.PARTIAL
                and method == "HEAD"
                and "GET" in getattr(route, "methods", ())
            )
            if match is Match.FULL or head_of_get:
                options = route_options(getattr(route, "endpoint", None))
                if options is not None:
                    found = (route, options, dict(child.get("path_params", {})))
                break
        if len(self._lookups) >= _LOOKUP_LIMIT:
            self._lookups.clear()
        self._lookups[memo] = found
        return found

    async def _storing_claims(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; if its handler claimed an entry, store the final response."""
        state: dict[str, Any] = scope.setdefault("state", {})
        capture: ResponseCapture | None = None

        async def watch(message: Message) -> None:
            nonlocal capture
            if capture is None and message["type"] == "http.response.start" and CLAIM in state:
                capture = ResponseCapture(send)
            await (capture or send)(message)

        try:
            await self.app(scope, receive, watch)
        except BaseException:
            claim = state.pop(CLAIM, None)
            if isinstance(claim, Claim):
                await claim.lease.fail()
            raise
        claim = state.pop(CLAIM, None)
        if isinstance(claim, Claim) and capture is not None:
            await self._settle(claim, capture, scope, send)

    async def _settle(
        self, claim: Claim, capture: ResponseCapture, scope: Scope, send: Send
    ) -> None:
        """Store a claimed response (or release the claim) and send it."""
        result = capture.result(claim.plan.options)
        if isinstance(result, Uncacheable):
            await claim.lease.skip()
            if not capture.streamed:
                await self.http_cache.send_uncached(send, scope, capture, capture.reason)
            return
        try:
            outcome = await claim.lease.fulfil(result)
        except AtomCacheError:
            await self.http_cache.send_uncached(send, scope, capture, "backend unavailable")
            return
        await self.http_cache.respond(send, scope, claim.plan, outcome)

    def _closing_on_shutdown(self, send: Send) -> Send:
        async def closing(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await self.cache.close()
            await send(message)

        return closing
