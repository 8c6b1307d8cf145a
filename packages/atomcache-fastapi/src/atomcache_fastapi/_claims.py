"""What a handler's `raise_try` hands the middleware: claims, bypasses, cached answers.

Shared by the middleware (`_middleware.py`), which settles them, and the original API
(`_migration.py`), which makes them; neither imports the other for them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request  # noqa: TC002 - FastAPI reads the annotation at run time
from starlette.responses import Response

from atomcache_core.asgi import HttpCache
from atomcache_core.exceptions import AtomCacheError

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

    from atomcache_core import Cache, Outcome
    from atomcache_core.asgi import Lease, RequestPlan

__all__ = [
    "BYPASS",
    "CLAIM",
    "CachedResponse",
    "Claim",
    "HeldLock",
    "http_cache_of",
    "serve_cached_response",
]

logger = logging.getLogger("atomcache")

#: Where a request's `Claim` waits for the middleware (the scope's `state`).
CLAIM = "atomcache_claim"
#: Where a handler's `raise_try` says why the cache was not used (`Cache-Status`).
BYPASS = "atomcache_bypass"


@dataclass(slots=True)
class Claim:
    """A request whose handler may store its response: the middleware settles it.

    Attributes:
        plan: The request's plan (key, freshness).
        lease: The single-flight lock this request holds, or `None` (no lock taken:
            `with_lock=False`, or a lockspace's lock, released by `release`).
        requested: `set` was called: the response is stored.
        release: Gives back a lockspace's lock once the response is settled.
    """

    plan: RequestPlan
    lease: Lease | None
    requested: bool = False
    release: HeldLock | None = None


@dataclass(frozen=True, slots=True)
class HeldLock:
    """A plain lock taken for `lock_timeout` seconds (a lockspace, or direct use)."""

    cache: Cache
    lock_key: str
    token: str

    async def release(self) -> None:
        try:
            await self.cache.lock.release(self.lock_key, self.token)
        except AtomCacheError:
            logger.warning("could not release %r; it expires by itself", self.lock_key)


class CachedResponse(Exception):  # noqa: N818 - the original name, kept for migration
    """Raised by `raise_try` to answer from the cache; `init`/`setup_cache` handle it."""

    def __init__(self, plan: RequestPlan, outcome: Outcome | None, cache: Cache) -> None:
        """Carry what to send: the outcome, or `None` for a 504 (only-if-cached)."""
        super().__init__(plan.key)
        self.plan = plan
        self.outcome = outcome
        self.cache = cache


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


def http_cache_of(app: Any, cache: Cache) -> HttpCache:
    """The app's `HttpCache` (one per app, made by `setup_cache` or `init`) if on `cache`.

    Its learned state (routes found stateful, the memo of header blocks) lives as long
    as the app; a cache the app was not set up with gets an `HttpCache` of its own.
    """
    made = getattr(getattr(app, "state", None), "atomcache_http", None)
    return made if isinstance(made, HttpCache) and made.cache is cache else HttpCache(cache)


async def serve_cached_response(request: Request, exc: Exception) -> Response:
    """Exception handler for `CachedResponse`, installed by `setup_cache` and `init`."""
    if not isinstance(exc, CachedResponse):  # pragma: no cover - registered for it only
        raise exc
    return _PlannedResponse(http_cache_of(request.app, exc.cache), exc)
