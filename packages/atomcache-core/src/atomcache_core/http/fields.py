"""Header fields: which a response keeps, which it drops, and how they are read.

Header lists are ASGI-style `(name, value)` pairs of `bytes`, names lower-case
(RFC 9110 section 5: field names are case-insensitive).
"""

from __future__ import annotations

from email.utils import formatdate
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "HOP_BY_HOP_HEADERS",
    "NOT_MODIFIED_HEADERS",
    "PER_REQUEST_HEADERS",
    "field_title",
    "format_http_date",
    "get_header",
    "not_modified_headers",
    "storable_headers",
]

#: Hop-by-hop fields (RFC 9110 section 7.6.1), never stored.
HOP_BY_HOP_HEADERS = frozenset(
    (
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    )
)
#: Fields a 304 carries from the 200 it stands for (RFC 9110 section 15.4.5).
NOT_MODIFIED_HEADERS = frozenset(
    (b"etag", b"cache-control", b"vary", b"content-location", b"expires", b"date")
)
_NEVER_STORED = frozenset((b"set-cookie", b"date", b"age"))
#: Fields that describe one exchange, not the response (HTTP.md 1.3): never stored,
#: so a hit never replays another request's identifiers or timings.
PER_REQUEST_HEADERS = frozenset(
    (
        b"x-request-id",
        b"x-correlation-id",
        b"request-id",
        b"traceparent",
        b"tracestate",
        b"server-timing",
        b"x-response-time",
        b"x-process-time",
    )
)


def get_header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The value of field `name` (lower-case), repeated fields joined by commas."""
    values = [value for key, value in headers if key == name]
    if not values:
        return None
    return values[0] if len(values) == 1 else b", ".join(values)


def storable_headers(
    headers: Iterable[tuple[bytes, bytes]],
    per_request: frozenset[bytes] = PER_REQUEST_HEADERS,
) -> list[tuple[bytes, bytes]]:
    """The fields to store with a response.

    All but hop-by-hop fields, `Set-Cookie`, `Date`, `Age` and the `per_request`
    fields (`PER_REQUEST_HEADERS` by default). Fields named by `Connection` are
    hop-by-hop too (RFC 9110 section 7.6.1).
    """
    pairs = [(key.lower(), value) for key, value in headers]
    named = {
        token.strip().lower().encode("latin-1")
        for value in (v for k, v in pairs if k == b"connection")
        for token in value.decode("latin-1").split(",")
    }
    dropped = HOP_BY_HOP_HEADERS | _NEVER_STORED | per_request | named
    return [(key, value) for key, value in pairs if key not in dropped]


def field_title(name: str) -> str:
    """A field name as it is usually written: `accept-language` -> `Accept-Language`."""
    return "-".join(part.capitalize() for part in name.split("-"))


def not_modified_headers(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The fields of a 304 that stands for a 200 with `headers` (RFC 9110 15.4.5).

    `ETag`, `Cache-Control`, `Vary`, `Content-Location`, `Expires` and `Date` are kept,
    and nothing that describes the body (`Content-Type`, `Content-Length`).
    """
    return [(key, value) for key, value in headers if key.lower() in NOT_MODIFIED_HEADERS]


def format_http_date(timestamp: float) -> str:
    """An HTTP-date (IMF-fixdate, RFC 9110 section 5.6.7) for a Unix timestamp."""
    return formatdate(timestamp, usegmt=True)
