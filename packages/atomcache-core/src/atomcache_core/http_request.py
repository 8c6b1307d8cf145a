"""The request side of HTTP caching: what a key is made of (HTTP.md 2.3).

Pure functions over an ASGI scope (plain dicts) and a `RoutePlan`: no I/O, no web
framework. The key is the target URI (RFC 9110 section 7.1: scheme, host, path, query)
plus the route's identity and the values of its secondary keys (RFC 9111 section 4.1):
whatever the application can read to build a response that the key does not hold is
an unkeyed input, the way web cache poisoning starts.

Storage key names hold the route's path template in clear and the rest hashed: a query
or a path may carry a credential (`?api_key=`, a reset token in the path), and key
names are what `SCAN`, `MONITOR` and slow logs show (HTTP.md 2.2).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, MutableMapping

    from atomcache_core.http_route import RoutePlan

    Scope = MutableMapping[str, Any]

__all__ = [
    "FORWARDING_FIELDS",
    "RequestInfo",
    "hash_credential",
    "request_key",
    "request_tags",
    "sorted_query",
    "target_digest",
]

#: Fields through which a proxy tells the app its public scheme, host and prefix; an
#: app that trusts them builds links from them, so they are keyed when present.
FORWARDING_FIELDS = (
    "forwarded",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-scheme",
    "x-forwarded-port",
    "x-forwarded-prefix",
)
_FORWARDING = frozenset(FORWARDING_FIELDS)


@dataclass(slots=True)  # not frozen: made on every request, and frozen costs per field
class RequestInfo:
    """What a cache key may depend on: the request, as the route saw it.

    Attributes:
        method: `GET` or `HEAD`.
        route: The route's path template, e.g. `/items/{item_id}`.
        path_params: The path parameters, by name.
        query: The query parameters in request order, repeated names kept.
        headers: Request fields, lower-case names, repeated fields joined by commas
            (`cookie` fields by `; `).
        scheme: `http` or `https`, as the server saw it.
        host: The `Host` field exactly as sent (letter case kept: an app that echoes
            it echoes this spelling), else the server's address.
        path: The full path the request was routed on, mount point included:
            `root_path` + `path` (`full_path`), percent-decoded as ASGI gives it.
        query_string: The query exactly as sent, without `?`.
        root_path: The ASGI `root_path` (the mount point), as the route saw it.
        routed_path: The ASGI `path` the router matched, as the route saw it (with or
            without `root_path`, as the server or framework gives it).
        raw_path: The ASGI `raw_path` (the path as sent, before any rewriting),
            decoded as Latin-1; empty when the server gives none.
        repeated: The lines of each field sent on more than one line, in order (`None`
            when none was): frameworks read such a field differently from the same
            values on one line (the first line, or the last cookie), so keys tell them
            apart.
    """

    method: str
    route: str
    path_params: Mapping[str, Any]
    query: tuple[tuple[str, str], ...]
    headers: Mapping[str, str]
    scheme: str = "http"
    host: str = ""
    path: str = "/"
    query_string: str = ""
    root_path: str = ""
    routed_path: str = "/"
    raw_path: str = ""
    repeated: Mapping[str, list[str]] | None = None

    @classmethod
    def from_scope(cls, scope: Scope, route: str, path_params: Mapping[str, Any]) -> RequestInfo:
        """Build it from an ASGI HTTP scope."""
        headers: dict[str, str] = {}
        repeated: dict[str, list[str]] | None = None
        for raw_name, raw_value in scope.get("headers", ()):
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            if name in headers:
                if repeated is None:
                    repeated = {}
                repeated.setdefault(name, [headers[name]]).append(value)
                value = f"{headers[name]}{'; ' if name == 'cookie' else ', '}{value}"
            headers[name] = value
        query_string = scope.get("query_string", b"").decode("latin-1")
        query = tuple(parse_qsl(query_string, keep_blank_values=True)) if query_string else ()
        host = headers.get("host", "")
        if not host:
            server = scope.get("server") or ("", None)
            host = f"{server[0]}:{server[1]}" if server[1] is not None else str(server[0])
        return cls(
            scope["method"],
            route,
            path_params,
            query,
            headers,
            scope.get("scheme", "http"),
            host,
            full_path(scope),
            query_string,
            scope.get("root_path", ""),
            scope.get("path", "/"),
            (scope.get("raw_path") or b"").decode("latin-1"),
            repeated,
        )


def full_path(scope: Scope) -> str:
    """The request's path with its mount point: `root_path` + `path` (ASGI spec).

    Servers and frameworks differ on whether `path` already starts with `root_path`
    (Starlette's `Mount` keeps the full path, some servers strip it): both give the
    same result.
    """
    path: str = scope.get("path", "/")
    root: str = scope.get("root_path", "")
    if not root or path == root or path.startswith(f"{root.rstrip('/')}/"):
        return path
    return root.rstrip("/") + path


def hash_credential(value: str) -> str:
    """A credential as it may appear in a storage key: its SHA-256, hex (HTTP.md 2.2)."""
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()


def cookie_values(header: str, names: Iterable[str]) -> list[list[str]]:
    """Every value of each cookie of `names` in a `Cookie` field, as sent, in order.

    Parsed as browsers and the frameworks do (Starlette's `cookie_parser`, Litestar's
    `parse_cookie_string`, after Django): pairs split on `;`, name and value on the first
    `=`, a chunk without `=` a value with an empty name; nothing is rejected, so the key
    always sees the values the handler sees. All values of a repeated name are kept
    (frameworks differ on which one wins).
    """
    found: dict[str, list[str]] = {}
    for chunk in header.split(";"):
        name, _, value = chunk.partition("=") if "=" in chunk else ("", "", chunk)
        found.setdefault(name.strip(), []).append(value.strip())
    return [found.get(name, []) for name in names]


#: Digests of recent targets (`target_digest`), by their parts: hits ask for the same
#: few again. Only short targets are kept, and at most this many, so junk URLs cannot
#: grow the memo.
_DIGESTS: dict[tuple[str, ...], str] = {}
_DIGESTS_LIMIT = 2048
_DIGEST_TEXT_LIMIT = 512


def target_digest(  # noqa: PLR0917 - the parts of a target URI, in order
    scheme: str, host: str, root_path: str, path: str, raw_path: str, query: str
) -> str:
    """The hash of a target URI as a key name holds it: 32 hex digits (128 bits of SHA-256).

    Each part is length-prefixed, so no two targets give the same text to hash.
    `root_path` and `path` (what routing used) are kept apart, whichever of them holds
    the mount point, and `raw_path` joins them: a framework's mount may take its prefix
    off `path` and leave `root_path` empty (Litestar's `is_mount`), and a path rewritten
    after it was received is then keyed apart from the one received.
    """
    parts = (scheme, host, root_path, path, raw_path, query)
    digest = _DIGESTS.get(parts)
    return digest if digest is not None else _digest_of(parts)


def _digest_of(parts: tuple[str, ...]) -> str:
    """`target_digest` of `parts`, computed (and kept, if short)."""
    text = "".join(f"{len(part)}:{part}" for part in parts)
    digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    if len(text) <= _DIGEST_TEXT_LIMIT:
        if len(_DIGESTS) >= _DIGESTS_LIMIT:
            _DIGESTS.clear()
        _DIGESTS[parts] = digest
    return digest


def sorted_query(query_string: str) -> str:
    """The query's parameters in order of name, each one's bytes exactly as sent.

    Parameters are split on `&` and sorted by their name's bytes (what comes before the
    first `=`, still percent-encoded), stably: nothing is decoded or re-encoded, so
    `?q=<b>` and `?q=%3Cb%3E` (which a page reflecting its URL shows differently)
    stay two entries, and so do bytes that are not UTF-8.
    """
    parameters = query_string.split("&")
    parameters.sort(key=lambda parameter: parameter.partition("=")[0])
    return "&".join(parameters)


def request_key(route: RoutePlan, info: RequestInfo, varied: tuple[str, ...] = ()) -> str:
    """The cache key of a request of `route` (HTTP.md 2.3).

    `http:<path template>:<target>`, where `<target>` is `target_digest` of the
    scheme, host as sent, mount point and path as routed, path as received (ASGI
    `raw_path`), and query as sent (its
    parameters sorted by name with `sort_query`); then, when the request has any,
    `:<variant>`: the hash of the forwarding fields present, of the values of the
    route's keyed fields and cookies (`vary_on`, `vary_on_cookies` and those it
    declares), and of the fields its responses were seen to vary on (`varied`, their
    `Vary`), so each variant has an entry of its own. No value appears in clear: a
    query or path may carry a credential. The method is not part of it, so `HEAD`
    uses the `GET` entry. A route's own `key=` replaces all but the template.
    """
    options = route.options
    prefix = f"http:{route.template}:"
    if options.key is not None:
        return f"{prefix}key:{options.key(info)}"
    headers = info.headers
    query = sorted_query(info.query_string) if options.sort_query else info.query_string
    target = (info.scheme, info.host, info.root_path, info.routed_path, info.raw_path, query)
    digest = _DIGESTS.get(target)  # target_digest, inlined: this is on every request's path
    key = prefix + (digest if digest is not None else _digest_of(target))
    parts: list[Any] = []
    if not _FORWARDING.isdisjoint(headers):
        lines = info.repeated or {}  # a field on several lines: keyed as its lines
        present = [name for name in FORWARDING_FIELDS if name in headers]
        parts.append(["f", [[name, lines.get(name, headers[name])] for name in present]])
    if route.key_headers or route.key_cookies:
        parts.append(["v", keyed_values(route, headers, info.repeated)])
    if varied:
        parts.append(["s", varied, [headers.get(name) for name in varied]])
    if not parts:
        return key
    return f"{key}:{_digest(parts)}"


def keyed_values(
    route: RoutePlan,
    headers: Mapping[str, str],
    repeated: Mapping[str, list[str]] | None = None,
) -> list[Any] | None:
    """The values of the fields and cookies `route` keys on, in order; `None` if none.

    `vary_on` fields and declared headers (`RoutePlan.key_headers`), then every value
    of each keyed cookie (`key_cookies`); `headers` have lower-case names. A field sent
    on several lines (`repeated`, `RequestInfo.repeated`) enters as its list of lines.
    """
    if not (route.key_headers or route.key_cookies):
        return None
    if repeated is None:
        values: list[Any] = [headers.get(name) for name in route.key_headers]
    else:
        values = [repeated.get(name, headers.get(name)) for name in route.key_headers]
    if route.key_cookies:
        lines = repeated.get("cookie") if repeated is not None else None
        if lines is None:
            values.extend(cookie_values(headers.get("cookie", ""), route.key_cookies))
        else:
            values.append([cookie_values(line, route.key_cookies) for line in lines])
    return values


def request_tags(route: RoutePlan, info: RequestInfo) -> tuple[str, ...]:
    """Tags that let `invalidate` find a request's entries without knowing keys.

    One for the route (its namespace), one for the route and path parameters (every
    host, query and `Vary` variant of them), one more with the query (sorted by name);
    on a route keyed on request fields (`keyed_values`), the last two again with those
    values, one with those values alone, and one per keyed field and its value (all of
    one caller's entries, whatever else they vary on), so one caller's entries can go
    without the others'. Values enter tag names hashed: a path, a query or a field may
    carry a credential.
    """
    group = route.options.namespace or route.template
    tags = [f"http-route:{group}"]
    params = sorted((str(name), str(value)) for name, value in info.path_params.items())
    query = sorted(info.query) if info.query else None
    values = keyed_values(route, info.headers, info.repeated)
    if values is not None:
        tags.append(_caller_tag(route, values))
        tags.extend(_field_tag(route, field) for field in _keyed_fields(route, info.headers))
    for keyed in [None] if values is None else [None, values]:
        if params:
            tags.append(_parameters_tag(route, params, None, keyed))
        if query is not None:
            tags.append(_parameters_tag(route, params, query, keyed))
    return tuple(tags)


def invalidation_tag(
    route: RoutePlan,
    path_params: Mapping[str, Any] | None,
    query: Iterable[tuple[str, Any]] | None,
    headers: Mapping[str, str] | None = None,
) -> str:
    """The tag `request_tags` gave the entries of these parameters (and request fields).

    With `headers` (any case), on a route keyed on request fields: naming one keyed
    field (say `authorization`) and no parameters, every entry of the route with that
    value of it, whatever else they vary on (one caller's); else the entries of a
    request carrying exactly these values (fields it does not name absent).
    """
    params = sorted((str(name), str(value)) for name, value in (path_params or {}).items())
    pairs = sorted((str(name), str(value)) for name, value in (query or ()))
    fields = {name.lower(): value for name, value in (headers or {}).items()}
    keyed = keyed_values(route, fields) if headers is not None else None
    if pairs:
        return _parameters_tag(route, params, pairs, keyed)
    if params:
        return _parameters_tag(route, params, None, keyed)
    if keyed is not None:
        named = _keyed_fields(route, fields)
        return _field_tag(route, named[0]) if len(named) == 1 else _caller_tag(route, keyed)
    return f"http-route:{route.options.namespace or route.template}"


def _keyed_fields(route: RoutePlan, headers: Mapping[str, str]) -> list[tuple[str, Any]]:
    """The keyed fields (`cookie:<name>` for cookies) a request carries, with their values."""
    fields: list[tuple[str, Any]] = [
        (name, headers[name]) for name in route.key_headers if name in headers
    ]
    if route.key_cookies and "cookie" in headers:
        found = cookie_values(headers["cookie"], route.key_cookies)
        fields.extend(
            (f"cookie:{name}", values)
            for name, values in zip(route.key_cookies, found, strict=True)
            if values
        )
    return fields


def _field_tag(route: RoutePlan, field: tuple[str, Any]) -> str:
    """`http-field:<template>:<hash>`: every entry of a route with one value of one field."""
    return f"http-field:{route.template}:{_digest(list(field))}"


def _caller_tag(route: RoutePlan, keyed: list[Any]) -> str:
    """`http-caller:<template>:<hash>`: every entry of one caller (`keyed_values`) of a route."""
    return f"http-caller:{route.template}:{_digest([keyed])}"


def _parameters_tag(
    route: RoutePlan,
    params: list[tuple[str, str]],
    query: list[tuple[str, str]] | None,
    keyed: list[Any] | None = None,
) -> str:
    """`http-params:<template>:<hash>` or `http-query:<template>:<hash>` of the values.

    With the values of the fields the route keys on, `http-caller-params:` and
    `http-caller-query:` instead.
    """
    kind = "http-query" if query is not None else "http-params"
    parts: list[Any] = [params] if query is None else [params, query]
    if keyed is not None:
        kind = kind.replace("http-", "http-caller-")
        parts.append(keyed)
    return f"{kind}:{route.template}:{_digest(parts)}"


def _digest(value: Any) -> str:
    return hash_credential(json.dumps(value, ensure_ascii=False))[:32]
