"""HTTP caching rules as pure functions: headers and bytes in, decisions out.

No I/O, no asyncio and no web framework: `atomcache_core.asgi` does the sending and
both adapters translate to it. Header lists are ASGI-style `(name, value)` pairs of
`bytes`, names lower-case. References: RFC 9110 (HTTP semantics), RFC 9111 (caching),
RFC 5861 (stale-while-revalidate, stale-if-error), RFC 9211 (Cache-Status).

One idea per module, each importing only those listed before it:

- `fields`: which header fields a response keeps, drops, and sends with a 304;
- `vary`: the response's own `Vary` and the secondary key it selects;
- `directives`: `Cache-Control` parsing and rendering, `private` marking;
- `conditional`: ETags and conditional requests (304, 412);
- `status`: `Cache-Status` values;
- `stored`: the stored response format (`StoredResponse`, `ResponseSerializer`);
- `storing`: whether a response is stored, and the entry made from it;
- `request`: `RequestInfo`, what a key may depend on, read from an ASGI scope;
- `route`: `RouteOptions` and `RoutePlan`, decided once per route;
- `keying` and `tags`: storage key and invalidation tag names;
- `endpoint`: the `@cached` endpoint and the gate of the application's checks;
- `plan`: `plan_request`, how one request uses the cache;
- `answer`: `answer_for`, the status, fields and body it gets.

This module re-exports the names it held when it was one file, so
`from atomcache_core.http import make_etag` keeps working.
"""

from __future__ import annotations

from atomcache_core.http.answer import Answer, answer_for
from atomcache_core.http.conditional import (
    if_none_match,
    make_etag,
    parse_entity_tags,
    precondition_status,
)
from atomcache_core.http.directives import (
    parse_cache_control,
    personal_headers,
    private_unless_set,
    render_cache_control,
)
from atomcache_core.http.fields import (
    HOP_BY_HOP_HEADERS,
    NOT_MODIFIED_HEADERS,
    PER_REQUEST_HEADERS,
    field_title,
    format_http_date,
    get_header,
    not_modified_headers,
    storable_headers,
)
from atomcache_core.http.plan import HttpPlan, plan_request
from atomcache_core.http.status import cache_status
from atomcache_core.http.stored import ResponseSerializer, StoredResponse
from atomcache_core.http.storing import response_storable
from atomcache_core.http.vary import parse_vary, selecting_fields, varies, with_vary

__all__ = [
    "HOP_BY_HOP_HEADERS",
    "NOT_MODIFIED_HEADERS",
    "PER_REQUEST_HEADERS",
    "Answer",
    "HttpPlan",
    "ResponseSerializer",
    "StoredResponse",
    "answer_for",
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
    "plan_request",
    "precondition_status",
    "private_unless_set",
    "render_cache_control",
    "response_storable",
    "selecting_fields",
    "storable_headers",
    "varies",
    "with_vary",
]
