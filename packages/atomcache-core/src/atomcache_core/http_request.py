"""The request side of HTTP caching, under its first import path.

`RequestInfo`, keys and tags now live in the `atomcache_core.http` package
(`http.request`, `http.keying`, `http.tags`), with the other pure rules; this module
re-exports them so that applications and adapters importing from here keep working
(it was public before the package existed: rename nothing without a deprecation path).
"""

from __future__ import annotations

from atomcache_core.http.keying import (
    FORWARDING_FIELDS,
    hash_credential,
    keyed_values,
    request_key,
    sorted_query,
    target_digest,
)
from atomcache_core.http.request import RequestInfo, cookie_values, full_path
from atomcache_core.http.tags import invalidation_tag, request_tags

__all__ = [
    "FORWARDING_FIELDS",
    "RequestInfo",
    "cookie_values",
    "full_path",
    "hash_credential",
    "invalidation_tag",
    "keyed_values",
    "request_key",
    "request_tags",
    "sorted_query",
    "target_digest",
]
