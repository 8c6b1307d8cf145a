"""Request info: what a cache key may depend on, read once from an ASGI scope.

Pure functions over an ASGI scope (plain dicts): no I/O, no web framework.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, MutableMapping

    Scope = MutableMapping[str, Any]

__all__ = ["RequestInfo", "cookie_values", "full_path"]


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
