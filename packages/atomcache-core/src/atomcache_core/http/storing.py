"""Storing: whether a complete response may be kept, and the entry made from it.

RFC 9111 section 3 (storing responses), section 4.1 (the response's own `Vary`) and
HTTP.md 1 (what is stored, what is not).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from atomcache_core.http.conditional import make_etag
from atomcache_core.http.directives import parse_cache_control
from atomcache_core.http.fields import get_header, storable_headers
from atomcache_core.http.stored import StoredResponse
from atomcache_core.http.vary import parse_vary, selecting_fields

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from atomcache_core.http.route import RoutePlan

__all__ = ["response_storable", "stored_response", "unstored_reason"]


def response_storable(
    status: int,
    headers: Iterable[tuple[bytes, bytes]],
    statuses: frozenset[int] | set[int],
) -> bool:
    """Whether a complete response may be stored in a shared cache.

    RFC 9111 section 3 and 5.2.2: the status must be one the route stores (by default
    only 200), never `206`; the response must not carry `Set-Cookie` (it is one user's)
    nor `Vary: *`; its own `Cache-Control` must not say `no-store`, `private` or
    `no-cache`.
    """
    if status not in statuses or status == 206:  # noqa: PLR2004 - Partial Content
        return False
    pairs = list(headers)
    if any(key.lower() == b"set-cookie" for key, _ in pairs):
        return False
    if "*" in parse_vary(get_header(((k.lower(), v) for k, v in pairs), b"vary")):
        return False  # RFC 9111 section 4.1: `Vary: *` never matches a later request
    directives = parse_cache_control(
        get_header(((k.lower(), v) for k, v in pairs), b"cache-control")
    )
    return not ({"no-store", "private", "no-cache"} & directives.keys())


def unstored_reason(
    route: RoutePlan,
    status: int,
    headers: Iterable[tuple[bytes, bytes]],
    body: bytes,
    *,
    streamed: bool = False,
) -> str | None:
    """Why a handler's response is not stored (its `Cache-Status` detail), or `None`.

    A stream passes through (HTTP.md 1.4); so does a response the rules keep out
    (`response_storable`) and a body over the route's `max_body_size`.
    """
    if streamed:
        return "streamed"
    if not response_storable(status, headers, route.options.statuses):
        return "not storable"
    if len(body) > route.options.max_body_size:
        return "too large"
    return None


def stored_response(
    route: RoutePlan,
    status: int,
    headers: Iterable[tuple[bytes, bytes]],
    body: bytes,
    request_headers: Mapping[str, str],
) -> StoredResponse:
    """The entry to store: final body, storable fields, Content-Length, Vary, ETag.

    The handler's own `Vary` names its secondary key (RFC 9111 section 4.1), selected
    among `request_headers` (lower-case names); the route's `vary_on` fields, and
    `Cookie, Authorization` unless it is public, are added to what is sent.
    """
    fields = list(headers)
    own_etag = get_header(fields, b"etag")
    kept = [
        (name, value)
        for name, value in storable_headers(fields, route.per_request)
        if name not in (b"content-length", b"etag")
    ]
    kept.append((b"content-length", str(len(body)).encode()))
    written = get_header(kept, b"vary")
    own = parse_vary(written)
    if route.vary:
        spelled = [part.strip() for part in (written or b"").split(b",") if part.strip()]
        spelled += [part.strip() for part in route.vary.split(b",")]
        merged = {part.lower(): part for part in reversed(spelled)}  # first spelling wins
        kept = [(name, value) for name, value in kept if name != b"vary"]
        kept.append((b"vary", b", ".join(reversed(merged.values()))))
    selecting = selecting_fields(own, request_headers)
    # The handler's own validator is kept (HTTP.md 4.1); else one from the body.
    etag = own_etag.decode("latin-1") if own_etag else make_etag(body)
    return StoredResponse(status, tuple(kept), body, etag, selecting)
