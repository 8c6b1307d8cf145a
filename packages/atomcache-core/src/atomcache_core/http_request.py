"""The request side of HTTP caching: what a key is made of (HTTP.md 2.3).

Pure functions over an ASGI scope (plain dicts) and a `RoutePlan`: no I/O, no web
framework. The key is the target URI (RFC 9110 section 7.1: scheme, host, path, query)
plus the route's identity and the values of its secondary keys (RFC 9111 section 4.1):
whatever the application can read to build a response that the key does not hold is
an unkeyed input, the way web cache poisoning starts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, MutableMapping

    from atomcache_core.http_route import RoutePlan

    Scope = MutableMapping[str, Any]

__all__ = ["FORWARDING_FIELDS", "RequestInfo", "hash_credential", "request_key", "request_tags"]

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
        host: The `Host` field (lower-case), else the server's address.
        path: The full path as the server received it (ASGI `raw_path`), mount point
            included; else `root_path` + `path`.
        query_string: The query exactly as sent, without `?`.
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

    @classmethod
    def from_scope(cls, scope: Scope, route: str, path_params: Mapping[str, Any]) -> RequestInfo:
        """Build it from an ASGI HTTP scope."""
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope.get("headers", ()):
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            if name in headers:
                value = f"{headers[name]}{'; ' if name == 'cookie' else ', '}{value}"
            headers[name] = value
        query_string = scope.get("query_string", b"").decode("latin-1")
        query = tuple(parse_qsl(query_string, keep_blank_values=True)) if query_string else ()
        host = headers.get("host", "").strip().lower()
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
            request_path(scope),
            query_string,
        )


def request_path(scope: Scope) -> str:
    """The path the server received, whatever a framework made of `path` since.

    ASGI `raw_path` when the server gives it (mounts, which strip their prefix from
    `path` in some frameworks, leave it alone), else `full_path`.
    """
    raw: bytes | None = scope.get("raw_path")
    return raw.decode("latin-1") if raw else full_path(scope)


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


def request_key(route: RoutePlan, info: RequestInfo, varied: tuple[str, ...] = ()) -> str:
    """The cache key of a request of `route` (HTTP.md 2.3).

    `http:<path template>:` then each part as `<length>:<text>` (unambiguous, whatever
    the text holds): scheme, host, full path, query as sent (sorted by name with
    `sort_query`), then, when there are any, the forwarding fields present (`f`), the
    hash of the values of the `vary_on` fields and `vary_on_cookies` cookies (`v`), and
    the hash of the fields the route's responses were seen to vary on (`varied`, their
    `Vary`; `s`), so each variant has an entry of its own. The method is not part of
    it, so `HEAD` uses the `GET` entry. A route's own `key=` replaces all but the
    template.
    """
    options = route.options
    prefix = f"http:{route.template}:"
    if options.key is not None:
        return f"{prefix}key:{options.key(info)}"
    headers = info.headers
    query = (
        urlencode(sorted(info.query, key=lambda item: item[0]))
        if options.sort_query
        else info.query_string
    )
    scheme, host, path = info.scheme, info.host, info.path
    key = f"{prefix}{len(scheme)}:{scheme}{len(host)}:{host}{len(path)}:{path}{len(query)}:{query}"
    parts: list[str] = []
    if not _FORWARDING.isdisjoint(headers):
        forwarded = [[name, headers[name]] for name in FORWARDING_FIELDS if name in headers]
        parts.append("f" + json.dumps(forwarded, ensure_ascii=False))
    if options.vary_on or options.vary_on_cookies:
        # Hashed, all of them: a field may carry an identity the route does not name as one.
        values: list[Any] = [headers.get(name) for name in options.vary_on]
        if options.vary_on_cookies:
            values.extend(cookie_values(headers.get("cookie", ""), options.vary_on_cookies))
        parts.append("v" + hash_credential(json.dumps(values, ensure_ascii=False)))
    if varied:
        secondary = [headers.get(name) for name in varied]
        parts.append("s" + hash_credential(json.dumps([varied, secondary], ensure_ascii=False)))
    if not parts:
        return key
    return key + "".join(f"{len(part)}:{part}" for part in parts)


def request_tags(route: RoutePlan, info: RequestInfo) -> tuple[str, ...]:
    """Tags that let `invalidate` find a request's entries without knowing keys.

    One for the route (its namespace), one for the route and path parameters (every
    host, query and `Vary` variant of them), one more with the query (sorted by name).
    """
    group = route.options.namespace or route.template
    tags = [f"http-route:{group}"]
    params = sorted((str(name), str(value)) for name, value in info.path_params.items())
    if params:
        tags.append(f"http-params:{route.template}:{json.dumps(params, ensure_ascii=False)}")
    if info.query:
        query = sorted(info.query)
        encoded = json.dumps([params, query], ensure_ascii=False)
        tags.append(f"http-query:{route.template}:{encoded}")
    return tuple(tags)


def invalidation_tag(
    route: RoutePlan,
    path_params: Mapping[str, Any] | None,
    query: Iterable[tuple[str, Any]] | None,
) -> str:
    """The tag `request_tags` gave the entries of these parameters."""
    params = sorted((str(name), str(value)) for name, value in (path_params or {}).items())
    pairs = sorted((str(name), str(value)) for name, value in (query or ()))
    if pairs:
        encoded = json.dumps([params, pairs], ensure_ascii=False)
        return f"http-query:{route.template}:{encoded}"
    if params:
        return f"http-params:{route.template}:{json.dumps(params, ensure_ascii=False)}"
    return f"http-route:{route.options.namespace or route.template}"
