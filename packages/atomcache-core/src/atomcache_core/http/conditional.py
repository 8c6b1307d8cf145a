"""Validators and conditional requests (RFC 9110 sections 8.8 and 13).

Strong ETags computed from the body, `If-None-Match` with weak comparison, and the
order in which `If-Match`, `If-Unmodified-Since`, `If-None-Match` and
`If-Modified-Since` decide between a 2xx, a `304` and a `412` (section 13.2.2).
"""

from __future__ import annotations

import base64
import hashlib
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "CONDITION_FIELDS",
    "if_none_match",
    "make_etag",
    "parse_entity_tags",
    "precondition_status",
    "revalidates",
]

#: The request fields that make a GET conditional (RFC 9110 section 13.1).
CONDITION_FIELDS = frozenset(
    ("if-match", "if-none-match", "if-modified-since", "if-unmodified-since")
)


def make_etag(body: bytes) -> str:
    """A strong entity tag for `body` (RFC 9110 section 8.8.3), quoted.

    The tag is a BLAKE2b-128 digest of the bytes, URL-safe base64: the same body gives
    the same tag in every process and after restarts, different bodies practically never
    share one.
    """
    digest = hashlib.blake2b(body, digest_size=16).digest()
    return '"' + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii") + '"'


def parse_entity_tags(value: str | bytes) -> list[str] | None:
    """Parse an `If-None-Match` value: a list of entity tags, or `None` for `*`.

    RFC 9110 section 13.1.2. Tags are returned as written (`"x"` or `W/"x"`);
    anything that is not an entity tag is skipped. Never raises.
    """
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    if text.strip() == "*":
        return None
    tags, position, length = [], 0, len(text)
    while position < length:
        start = text.find('"', position)
        if start < 0:
            break
        end = text.find('"', start + 1)
        if end < 0:
            break
        weak = text[max(0, start - 2) : start] == "W/"
        tags.append(("W/" if weak else "") + text[start : end + 1])
        position = end + 1
    return tags


def if_none_match(header: str | bytes | None, etag: str) -> bool:
    """Whether `If-None-Match: header` matches the current `etag` (RFC 9110 13.1.2).

    Weak comparison (section 8.8.3.2): `W/"x"` and `"x"` match. `*` matches any
    current representation. No header, or an empty one, matches nothing.
    """
    if not header:
        return False
    if header == etag:  # the usual revalidation: the client sends back the one tag it got
        return True
    tags = parse_entity_tags(header)
    if tags is None:
        return True
    opaque = etag.removeprefix("W/")
    return any(tag.removeprefix("W/") == opaque for tag in tags)


def precondition_status(
    request_headers: Mapping[str, str],
    etag: str,
    last_modified: bytes | None,
) -> int | None:
    """The status a conditional GET/HEAD gets for a 2xx response, or `None` for the 2xx.

    RFC 9110 section 13.2.2, in its order: a failing `If-Match` (strong comparison,
    `*` matches) gives `412`; else a failing `If-Unmodified-Since` (when the response
    has a `Last-Modified`) gives `412`; then a matching `If-None-Match` (weak
    comparison) gives `304`; without `If-None-Match`, `If-Modified-Since` no earlier
    than `Last-Modified` gives `304`. Unparsable dates are ignored. Never raises.
    """
    if_match = request_headers.get("if-match")
    if if_match is not None:
        tags = parse_entity_tags(if_match)
        if tags is not None and (etag.startswith("W/") or etag not in tags):
            return 412
    elif last_modified is not None:
        since = _parse_date(request_headers.get("if-unmodified-since"))
        modified = _parse_date(last_modified.decode("latin-1"))
        if since is not None and modified is not None and modified > since:
            return 412
    inm = request_headers.get("if-none-match")
    if inm is not None:
        return 304 if if_none_match(inm, etag) else None
    if last_modified is not None:
        since = _parse_date(request_headers.get("if-modified-since"))
        modified = _parse_date(last_modified.decode("latin-1"))
        if since is not None and modified is not None and modified <= since:
            return 304
    return None


def _parse_date(value: str | None) -> float | None:
    """An HTTP-date (RFC 9110 section 5.6.7) as a timestamp, `None` if it is not one."""
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def revalidates(headers: Mapping[str, str]) -> bool:
    """Whether a request asks to validate a copy it holds (RFC 9110 section 13.1)."""
    return "if-none-match" in headers or "if-modified-since" in headers
