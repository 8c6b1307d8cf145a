"""HTTP caching rules as pure functions: headers and bytes in, decisions out.

No I/O and no web framework: both adapters call these. Header lists are ASGI-style
`(name, value)` pairs of `bytes`, names lower-case. References: RFC 9110 (HTTP
semantics), RFC 9111 (caching), RFC 5861 (stale-while-revalidate, stale-if-error),
RFC 9211 (Cache-Status).
"""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from atomcache_core.exceptions import SerializationError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = [
    "HOP_BY_HOP_HEADERS",
    "NOT_MODIFIED_HEADERS",
    "PER_REQUEST_HEADERS",
    "ResponseSerializer",
    "StoredResponse",
    "cache_status",
    "field_title",
    "format_http_date",
    "get_header",
    "if_none_match",
    "make_etag",
    "not_modified_headers",
    "parse_cache_control",
    "parse_entity_tags",
    "parse_vary",
    "personal_headers",
    "precondition_status",
    "private_unless_set",
    "render_cache_control",
    "response_storable",
    "selecting_fields",
    "storable_headers",
    "varies",
    "with_vary",
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
_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def parse_cache_control(value: str | bytes | None) -> dict[str, str | None]:
    """Parse a `Cache-Control` field value into `{directive: argument or None}`.

    RFC 9111 section 5.2: a comma-separated list of directives, names compared
    case-insensitively (returned lower-case), arguments as tokens or quoted strings
    (returned unquoted). Unknown directives are kept (callers ignore what they do not
    know); malformed pieces are skipped. Never raises.
    """
    if value is None:
        return {}
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    directives: dict[str, str | None] = {}
    for name, argument in _split_directives(text):
        if name and all(char in _TOKEN_CHARS for char in name):
            directives.setdefault(name.lower(), argument)
    return directives


def _split_directives(text: str) -> Iterable[tuple[str, str | None]]:
    """Split on commas outside quoted strings; yield `(name, argument)` pairs."""
    position, length = 0, len(text)
    while position < length:
        end = position
        in_quotes = False
        while end < length and (in_quotes or text[end] != ","):
            if text[end] == "\\" and in_quotes:
                end += 1
            elif text[end] == '"':
                in_quotes = not in_quotes
            end += 1
        piece = text[position:end].strip()
        position = end + 1
        if not piece:
            continue
        name, equals, argument = piece.partition("=")
        if not equals:
            yield name.strip(), None
            continue
        argument = argument.strip()
        if len(argument) >= 2 and argument[0] == '"' and argument[-1] == '"':  # noqa: PLR2004
            argument = _unquote(argument[1:-1])
        yield name.strip(), argument


def _unquote(text: str) -> str:
    result, escaped = [], False
    for char in text:
        if escaped or char != "\\":
            result.append(char)
            escaped = False
        else:
            escaped = True
    return "".join(result)


def render_cache_control(directives: Mapping[str, str | int | None]) -> str:
    """Render directives as a `Cache-Control` value (RFC 9111 section 5.2).

    `None` gives a bare directive (`no-store`); numbers are delta-seconds; strings that
    are not tokens are quoted (`private="set-cookie"`).
    """
    parts = []
    for name, argument in directives.items():
        if argument is None:
            parts.append(name)
        elif isinstance(argument, int) or (
            argument and all(char in _TOKEN_CHARS for char in argument)
        ):
            parts.append(f"{name}={argument}")
        else:
            escaped = str(argument).replace("\\", "\\\\").replace('"', '\\"')
            parts.append(f'{name}="{escaped}"')
    return ", ".join(parts)


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


def get_header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The value of field `name` (lower-case), repeated fields joined by commas."""
    values = [value for key, value in headers if key == name]
    if not values:
        return None
    return values[0] if len(values) == 1 else b", ".join(values)


def with_vary(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> list[tuple[bytes, bytes]]:
    """`headers` (lower-case names) with `name` among the field names `Vary` lists.

    Added to the first `Vary` field (else a new one), unless it is listed already, so
    a layer that adds it too never makes it appear twice.
    """
    fields = list(headers)
    for index, (key, value) in enumerate(fields):
        if key == b"vary":
            if name.decode("latin-1").lower() not in parse_vary(value):
                fields[index] = (key, value + b", " + name)
            return fields
    fields.append((b"vary", name))
    return fields


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


def personal_headers(
    headers: Iterable[tuple[bytes, bytes]], field: str
) -> list[tuple[bytes, bytes]]:
    """Response fields marking a response computed for the credentials in `field`.

    Adds `Cache-Control: private` unless the response has a `Cache-Control` of its own
    (RFC 9111 section 5.2.2.7: no shared cache may store it), and names `field` in
    `Vary` (RFC 9110 section 12.5.5, `with_vary`), so no cache in front hands it to a
    caller without the same credentials (HTTP.md 2.2).
    """
    return with_vary(private_unless_set(headers), field_title(field).encode("latin-1"))


def private_unless_set(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """`headers` with `Cache-Control: private` added unless they have a `Cache-Control`.

    For a response meant for one caller (RFC 9111 section 5.2.2.7): no shared cache in
    front may store it, unless the handler said otherwise itself.
    """
    fields = list(headers)
    if get_header(fields, b"cache-control") is None:
        fields.append((b"cache-control", b"private"))
    return fields


def field_title(name: str) -> str:
    """A field name as it is usually written: `accept-language` -> `Accept-Language`."""
    return "-".join(part.capitalize() for part in name.split("-"))


def parse_vary(value: bytes | str | None) -> tuple[str, ...]:
    """The field names of a `Vary` value, lower-case, in order, once each (RFC 9110 12.5.5).

    `*` is kept as a name of its own. Never raises.
    """
    if not value:
        return ()
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    names = (name.strip().lower() for name in text.split(","))
    return tuple(dict.fromkeys(name for name in names if name))


def selecting_fields(
    names: Iterable[str], request_headers: Mapping[str, str]
) -> tuple[tuple[str, str], ...]:
    """The secondary key of a stored response (RFC 9111 section 4.1).

    Each `Vary` name with a digest of the request's value of it; absent fields have a
    digest of their own. Values are hashed so that no credential (a `Vary: Cookie`) is
    kept in clear; a field sent several times is compared as its comma-joined value.
    """
    return tuple((name, _field_digest(request_headers.get(name))) for name in names)


def varies(selecting: Iterable[tuple[str, str]], request_headers: Mapping[str, str]) -> bool:
    """Whether a request's fields differ from a stored response's secondary key.

    `True` means the stored response must not be used for this request (RFC 9111
    section 4.1).
    """
    return any(_field_digest(request_headers.get(name)) != digest for name, digest in selecting)


def _field_digest(value: str | None) -> str:
    if value is None:
        return "-"
    normalized = ",".join(part.strip() for part in value.split(","))  # RFC 9111 4.1
    encoded = normalized.encode("utf-8", "surrogateescape")
    return hashlib.blake2b(encoded, digest_size=12).hexdigest()


def not_modified_headers(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The fields of a 304 that stands for a 200 with `headers` (RFC 9110 15.4.5).

    `ETag`, `Cache-Control`, `Vary`, `Content-Location`, `Expires` and `Date` are kept,
    and nothing that describes the body (`Content-Type`, `Content-Length`).
    """
    return [(key, value) for key, value in headers if key.lower() in NOT_MODIFIED_HEADERS]


def format_http_date(timestamp: float) -> str:
    """An HTTP-date (IMF-fixdate, RFC 9110 section 5.6.7) for a Unix timestamp."""
    return formatdate(timestamp, usegmt=True)


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


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A response as kept in the cache: final status, fields and body bytes.

    Attributes:
        status: The status code.
        headers: Stored fields (see `storable_headers`), ETag included.
        body: The body exactly as the framework produced it.
        etag: The strong ETag of `body`, quoted.
        selecting: The secondary key (`selecting_fields`): the names of the response's
            own `Vary` and digests of the values the request had.
    """

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    etag: str
    selecting: tuple[tuple[str, str], ...] = ()


_RESPONSE_HEAD = struct.Struct(">HH")
_FIELD_HEAD = struct.Struct(">HI")


class ResponseSerializer:
    """Stores a `StoredResponse` as compact binary: status, fields, ETag, body.

    Layout: status and field count (uint16 each); per field, name length (uint16) and
    value length (uint32) then both; the ETag as one more field named `etag`, first,
    followed in its value by the secondary key, a line `name<TAB>digest` per field
    (an ETag has no line break); then the body, unchanged, so a hit sends a slice of
    what was read.
    """

    def dumps(self, value: Any) -> bytes:
        """Encode a `StoredResponse`."""
        if not isinstance(value, StoredResponse):
            msg = f"ResponseSerializer stores StoredResponse objects, got {type(value).__name__}"
            raise SerializationError(msg, value_type=type(value).__name__, direction="dumps")
        try:
            validator = b"\n".join(
                [
                    value.etag.encode("latin-1"),  # obs-text is allowed (RFC 9110 8.8.3)
                    *(f"{name}\t{digest}".encode("latin-1") for name, digest in value.selecting),
                ]
            )
            fields = [(b"etag", validator), *value.headers]
            parts = [_RESPONSE_HEAD.pack(value.status, len(fields))]
            for name, field_value in fields:
                parts.extend((_FIELD_HEAD.pack(len(name), len(field_value)), name, field_value))
        except (struct.error, UnicodeEncodeError) as exc:
            msg = (
                f"response with status {value.status!r} and ETag {value.etag!r} does not fit"
                f" the stored layout ({exc}); it needs a status and field count up to 65535,"
                " field names up to 65535 bytes, values up to 4 GiB and an ETag of"
                " ISO-8859-1 characters without a line break"
            )
            raise SerializationError(
                msg, value_type=type(value).__name__, direction="dumps"
            ) from exc
        parts.append(value.body)
        return b"".join(parts)

    def loads(self, data: bytes) -> StoredResponse:
        """Decode bytes made by `dumps`."""
        try:
            status, count = _RESPONSE_HEAD.unpack_from(data)
            position = _RESPONSE_HEAD.size
            fields = []
            for _ in range(count):
                name_length, value_length = _FIELD_HEAD.unpack_from(data, position)
                position += _FIELD_HEAD.size
                name = data[position : position + name_length]
                position += name_length
                fields.append((name, data[position : position + value_length]))
                position += value_length
            if position > len(data) or not fields or fields[0][0] != b"etag":
                raise ValueError("truncated")  # noqa: TRY301 - one handler below
            etag, *lines = fields[0][1].decode("latin-1").split("\n")
            selecting = tuple(tuple(line.split("\t", 1)) for line in lines)
            if any(len(pair) != 2 for pair in selecting):  # noqa: PLR2004 - (name, digest)
                raise ValueError("bad secondary key")  # noqa: TRY301 - one handler below
        except (struct.error, ValueError, UnicodeError) as exc:
            msg = f"stored response is corrupt ({exc}); it is treated as a miss"
            raise SerializationError(msg, value_type="bytes", direction="loads") from exc
        return StoredResponse(status, tuple(fields[1:]), data[position:], etag, selecting)  # type: ignore[arg-type]
