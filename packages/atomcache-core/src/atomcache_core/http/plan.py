"""The plan of one request of a cached route: whether the cache may be used, and how.

Decided from the route's plan and the request alone, before any I/O: the reason to
bypass the cache (`Cache-Status` detail), else the key, the request's `Cache-Control`
directives (RFC 9111 section 5.2.1) and what they ask for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from atomcache_core.http.conditional import revalidates
from atomcache_core.http.directives import parse_cache_control
from atomcache_core.http.keying import request_key
from atomcache_core.http.status import SET_COOKIE

if TYPE_CHECKING:
    from collections.abc import Mapping

    from typing_extensions import Self

    from atomcache_core.http.request import RequestInfo
    from atomcache_core.http.route import RoutePlan

__all__ = ["CACHEABLE_METHODS", "REVALIDATION_MARGIN", "HttpPlan", "plan_request"]

#: The methods that use the cache (HTTP.md 1.1): a `HEAD` uses the `GET` entry.
CACHEABLE_METHODS = frozenset(("GET", "HEAD"))
#: A revalidation (a conditional request) of an entry with less than this many seconds
#: left renews the entry: its 304 would carry `max-age=0`, which refreshes nothing in a
#: cache in front (nginx then keeps its old copy for as long again).
REVALIDATION_MARGIN = 1.0


@dataclass(slots=True)  # not frozen: made on every request, and frozen costs per field
class HttpPlan:
    """What HTTP's rules decide for one request of a cached route that uses the cache.

    Attributes:
        info: The request, as keys see it.
        route: The route's plan.
        key: The entry's cache key.
        directives: The request's `Cache-Control` directives.
        forced: Whether the request asked for a refresh (`no-cache`, honoured).
        store: Whether what is computed for it may be stored (no `no-store`).
        fresh_margin: Seconds of freshness under which an entry counts as expired for
            it: `REVALIDATION_MARGIN` for a conditional request, else none.
    """

    info: RequestInfo
    route: RoutePlan
    key: str
    directives: Mapping[str, str | None]
    forced: bool
    store: bool = True
    fresh_margin: float = 0.0

    @property
    def only_if_cached(self) -> bool:
        """Whether the request may only be answered from the cache."""
        return "only-if-cached" in self.directives

    @classmethod
    def of(
        cls,
        route: RoutePlan,
        info: RequestInfo,
        varied: tuple[str, ...] = (),
        *,
        stateful: bool = False,
    ) -> Self | str:
        """Decide how a request of `route` uses the cache; a string says why it bypasses it.

        The reasons, in order: `"method"` (not `GET`/`HEAD`), a credential or request
        body (`RoutePlan.bypass_reason`), `SET_COOKIE` (`stateful`: the route's pages
        were seen to give new visitors a cookie). `varied`: the fields a stored entry of
        the same target varies on, whose values in this request key its own variant
        (RFC 9111 section 4.1). The request's `Cache-Control` directives are read as RFC
        9111 section 5.2.1 says, `Pragma: no-cache` standing for `no-cache` without them
        (section 5.4). A subclass (`atomcache_core.asgi.RequestPlan`) makes its own kind.
        """
        if info.method not in CACHEABLE_METHODS:
            return "method"
        reason = route.bypass_reason(info.headers)
        if reason is not None:
            return reason
        if stateful:
            return SET_COOKIE
        headers = info.headers
        directives = parse_cache_control(headers.get("cache-control"))
        if not directives and "no-cache" in headers.get("pragma", "").lower():
            directives = {"no-cache": None}
        forced = route.options.no_cache == "honour" and (
            "no-cache" in directives or directives.get("max-age") == "0"
        )
        return cls(
            info,
            route,
            request_key(route, info, varied),
            directives,
            forced,
            "no-store" not in directives,
            REVALIDATION_MARGIN if revalidates(headers) else 0.0,
        )


#: Decide how a request uses the cache: `HttpPlan.of`, as a function.
plan_request = HttpPlan.of
