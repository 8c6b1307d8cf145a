"""`Cache-Status` (RFC 9211): what the cache did for a response, one member per cache.

The strings are part of the contract (HTTP.md 5.3): tests, dashboards and the caches
in front read them, so they change only on purpose.
"""

from __future__ import annotations

import functools

__all__ = [
    "REFUSED",
    "SET_COOKIE",
    "cache_status",
    "hit_status",
    "status_of",
]

#: The `Cache-Status` detail of a response that the app made before the route's endpoint
#: (a check refused the request): the same whatever the cache holds (HTTP.md 0.1).
REFUSED = "refused"
#: The `Cache-Status` detail of requests of a route whose pages a middleware outside the
#: cache gives new visitors a cookie with (`HttpCache.observe`).
SET_COOKIE = "set-cookie"


def cache_status(
    *,
    hit: bool,
    forward: str | None = None,
    stored: bool = False,
    ttl: int | None = None,
    detail: str | None = None,
    name: str = "atomcache",
) -> str:
    """A `Cache-Status` member (RFC 9211 section 2): `atomcache; hit; ttl=42`.

    `forward` is the `fwd` reason (`uri-miss`, `miss`, `request`, `stale`); `stored`
    adds `stored`; `ttl` the remaining freshness in seconds; `detail` a free-form note.
    """
    parts = [name]
    if hit:
        parts.append("hit")
    if forward is not None:
        parts.append(f"fwd={forward}")
    if stored:
        parts.append("stored")
    if ttl is not None:
        parts.append(f"ttl={ttl}")
    if detail is not None:
        escaped = detail.replace("\\", "\\\\").replace('"', '\\"')
        parts.append(f'detail="{escaped}"')
    return "; ".join(parts)


def status_of(source: str, remaining: int, *, forced: bool, reason: str = "") -> bytes:
    """The `Cache-Status` of an answer from a single-flight outcome (RFC 9211).

    `source` is where the response came from (`hit`, `stale`, `computed`, `waited`,
    `uncached`), `remaining` the whole seconds of freshness its entry has left,
    `forced` whether the request's `no-cache` made it recomputed, `reason` why an
    `uncached` one was not stored.
    """
    if source == "hit":
        return hit_status(remaining)
    forward = "request" if forced else "miss"
    if source == "stale":
        status = cache_status(hit=True, forward="stale", ttl=0)
    elif source == "computed":
        status = cache_status(hit=False, forward=forward, stored=True, ttl=remaining)
    elif source == "waited":
        status = cache_status(hit=False, forward=forward, ttl=remaining, detail="coalesced")
    else:
        status = cache_status(hit=False, forward=forward, detail=reason or "not stored")
    return status.encode("latin-1")


@functools.lru_cache(maxsize=4096)
def hit_status(remaining: int) -> bytes:
    """The `Cache-Status` of a hit with `remaining` seconds of freshness, made once."""
    return cache_status(hit=True, ttl=remaining).encode("latin-1")


def encoded_status(*, forward: str, detail: str) -> bytes:
    """The `Cache-Status` of a response not served from an entry, as a field value."""
    return cache_status(hit=False, forward=forward, detail=detail).encode("latin-1")


#: The `Cache-Status` of a page that carries a new visitor's cookie.
SET_COOKIE_STATUS = encoded_status(forward="miss", detail=SET_COOKIE)
#: The `Cache-Status` of a streamed response: it passes through, never stored.
STREAMED_STATUS = encoded_status(forward="miss", detail="streamed")
#: The `Cache-Status` of what the app answered instead of the route's endpoint.
REFUSED_STATUS = encoded_status(forward="bypass", detail=REFUSED)
