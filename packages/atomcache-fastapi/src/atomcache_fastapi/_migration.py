"""`ResponseCache`: the original atomcache's dependency API, on the new engine.

A route takes `cache: ResponseCache = Depends(ResponseCache(exp=600))`, calls
`await cache.raise_try(cache_id)` (which answers from the cache, or returns so the
handler computes) and returns `cache.set(rows, cache_id=cache_id)`, as in the original;
docs/migrating.md shows whole routes, before and after.

Fixed on the way: each request gets its own bound copy of the dependency (the
original kept the request on the shared object); hits are the final bytes, response
model filtering included; the ETag is strong and quoted; there is single flight
across processes; and the HTTP behaviour is that of `@cached`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.requests import Request  # noqa: TC002 - FastAPI reads the annotation at run time
from starlette.responses import Response

from atomcache_core import Cache, ConfigurationError, Outcome
from atomcache_core._singleflight import Lease
from atomcache_core.asgi import HttpCache, RequestPlan, RouteOptions, RoutePlan
from atomcache_core.exceptions import AtomCacheError

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

__all__ = ["CLAIM", "CachedResponse", "Claim", "ResponseCache", "serve_cached_response"]

ResponseT = TypeVar("ResponseT")
CLAIM = "atomcache_claim"


@dataclass(frozen=True, slots=True)
class Claim:
    """A request whose handler computes an entry: the middleware stores its response."""

    plan: RequestPlan
    lease: Lease


class CachedResponse(Exception):  # noqa: N818 - the original name, kept for migration
    """Raised by `raise_try` to answer from the cache; `setup_cache` handles it."""

    def __init__(self, plan: RequestPlan, outcome: Outcome | None) -> None:
        """Carry what to send: the outcome, or `None` for a 504 (only-if-cached)."""
        super().__init__(plan.key)
        self.plan = plan
        self.outcome = outcome


class ResponseCache:
    """The original `Cache(exp=...)` dependency: `Depends(ResponseCache(exp=600))`.

    Args:
        exp: Seconds a response stays fresh.
        namespace: Groups the entries; default: the route's path template.
        lock_timeout: Kept for compatibility. The lock is now extended while the
            handler computes, so long computations are safe without tuning it; how
            long others wait is the cache's `wait_timeout`.
        cache_control: Honour the request's `no-cache` by recomputing (at most once
            per second); `False` serves the entry regardless.
    """

    def __init__(
        self,
        exp: float = 600,
        namespace: str | None = None,
        lock_timeout: float = 5,
        *,
        cache_control: bool = True,
    ) -> None:
        """Describe the caching of one route."""
        self.exp = exp
        self.namespace = namespace
        self.lock_timeout = lock_timeout
        self.cache_control = cache_control
        self._request: Request | None = None

    async def __call__(self, request: Request) -> ResponseCache:
        """Bind a copy to the request: nothing is shared between requests."""
        bound = copy.copy(self)
        bound._request = request  # noqa: SLF001 - the copy's own state
        return bound

    async def raise_try(self, cache_id: str = "") -> None:
        """Answer from the cache (raising `CachedResponse`), or return to compute.

        When the entry is missing, this request takes the single-flight lock, or
        waits for the process that holds it and answers with its result.
        """
        request = self._bound()
        cache: Cache = request.app.state.atomcache
        http_cache = HttpCache(cache)
        route = str(getattr(request.scope.get("route"), "path", request.url.path))
        options = RouteOptions(
            ttl=self.exp,
            namespace=self.namespace or route,
            no_cache="honour" if self.cache_control else "ignore",
            key=lambda _: cache_id,
        )
        plan = http_cache.plan(request.scope, RoutePlan(route, options), request.path_params)
        if isinstance(plan, str):
            return
        try:
            if plan.only_if_cached or not plan.flight.store:
                outcome = await cache.single_flight.peek(plan.key, plan.flight)
                if outcome is not None or plan.only_if_cached:
                    raise CachedResponse(plan, outcome)
                return
            claimed = await cache.single_flight.claim(plan.key, plan.flight)
        except AtomCacheError:
            return  # fail open: the handler answers
        if isinstance(claimed, Outcome):
            raise CachedResponse(plan, claimed)
        if isinstance(claimed, Lease):
            request.scope.setdefault("state", {})[CLAIM] = Claim(plan, claimed)

    def set(self, response: ResponseT, cache_id: str = "") -> ResponseT:  # noqa: ARG002 - the original signature
        """Return `response`; its final bytes are stored once FastAPI has encoded them.

        Storing happens in the middleware, after response-model filtering, under the
        `cache_id` given to `raise_try` (call it first, as in the original).
        """
        self._bound()
        return response

    def _bound(self) -> Request:
        if self._request is None:
            msg = (
                "use ResponseCache as a dependency: "
                "cache: ResponseCache = Depends(ResponseCache(exp=600))"
            )
            raise ConfigurationError(msg)
        return self._request


class _PlannedResponse(Response):
    """Sends an outcome the way `@cached` routes do (ETag, 304, Cache-Status)."""

    def __init__(self, http_cache: HttpCache, exc: CachedResponse) -> None:
        super().__init__()
        self._http_cache = http_cache
        self._exc = exc

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: ARG002 - ASGI signature
        if self._exc.outcome is None:
            await self._http_cache.gateway_timeout(send)
        else:
            await self._http_cache.respond(send, scope, self._exc.plan, self._exc.outcome)


async def serve_cached_response(request: Request, exc: Exception) -> Response:
    """Exception handler for `CachedResponse`, installed by `setup_cache`."""
    if not isinstance(exc, CachedResponse):  # pragma: no cover - registered for it only
        raise exc
    cache: Any = request.app.state.atomcache
    return _PlannedResponse(HttpCache(cache), exc)
