"""Tags: how `invalidate` finds a request's entries without knowing their keys.

Tag names hold the route's path template in clear and values hashed (`value_digest`), as
key names do: a path, a query or a field may carry a credential.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from atomcache_core.http.keying import keyed_values, value_digest
from atomcache_core.http.request import cookie_values

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from atomcache_core.http.request import RequestInfo
    from atomcache_core.http.route import RoutePlan

__all__ = ["entry_tags", "invalidation_tag", "request_tags"]


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
    return f"http-field:{route.template}:{value_digest(list(field))}"


def _caller_tag(route: RoutePlan, keyed: list[Any]) -> str:
    """`http-caller:<template>:<hash>`: every entry of one caller (`keyed_values`) of a route."""
    return f"http-caller:{route.template}:{value_digest([keyed])}"


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
    return f"{kind}:{route.template}:{value_digest(parts)}"


def entry_tags(route: RoutePlan, info: RequestInfo) -> tuple[str, ...]:
    """Every tag of the entry a request stores: `request_tags`, then the route's `tags`."""
    own = request_tags(route, info)
    tags = route.options.tags
    if not tags:
        return own
    extra = tags(info) if callable(tags) else tags
    return (*own, *extra)
