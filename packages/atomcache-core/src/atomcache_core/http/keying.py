"""Keying: the storage key of a request of a cached route (HTTP.md 2.3).

The key is the target URI (RFC 9110 section 7.1: scheme, host, path, query) plus the
route's identity and the values of its secondary keys (RFC 9111 section 4.1):
whatever the application can read to build a response that the key does not hold is
an unkeyed input, the way web cache poisoning starts.

Storage key names hold the route's path template in clear and the rest hashed: a query
or a path may carry a credential (`?api_key=`, a reset token in the path), and key
names are what `SCAN`, `MONITOR` and slow logs show (HTTP.md 2.2). The format is
stored (entries outlive a deploy): it changes only on purpose.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from atomcache_core.http.request import cookie_values

if TYPE_CHECKING:
    from collections.abc import Mapping

    from atomcache_core.http.request import RequestInfo
    from atomcache_core.http.route import RoutePlan

__all__ = [
    "FORWARDING_FIELDS",
    "hash_credential",
    "keyed_values",
    "request_key",
    "sorted_query",
    "target_digest",
    "value_digest",
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


def hash_credential(value: str) -> str:
    """A credential as it may appear in a storage key: its SHA-256, hex (HTTP.md 2.2)."""
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()


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
    return f"{key}:{value_digest(parts)}"


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


def value_digest(value: Any) -> str:
    """32 hex digits of the SHA-256 of `value` as JSON: how values enter key and tag names."""
    return hash_credential(json.dumps(value, ensure_ascii=False))[:32]
