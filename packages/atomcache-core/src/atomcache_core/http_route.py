"""What a cached route declares, under its first import path.

`RouteOptions` and `RoutePlan` now live in `atomcache_core.http.route`, and the
`@cached` endpoint with its gate in `atomcache_core.http.endpoint`, with the other pure
rules; this module re-exports them so that applications and adapters importing from
here keep working (it was public before the package existed: rename nothing without a
deprecation path).
"""

from __future__ import annotations

from atomcache_core.http.endpoint import (
    GATE,
    PASSING,
    Gate,
    cached,
    find_cached,
    misplaced,
    refuse_misplaced,
    refuse_websocket,
    route_options,
)
from atomcache_core.http.route import (
    CREDENTIAL_FIELDS,
    DEFAULT_MAX_BODY_SIZE,
    RouteOptions,
    RoutePlan,
)

__all__ = [
    "CREDENTIAL_FIELDS",
    "DEFAULT_MAX_BODY_SIZE",
    "GATE",
    "PASSING",
    "Gate",
    "RouteOptions",
    "RoutePlan",
    "cached",
    "find_cached",
    "misplaced",
    "refuse_misplaced",
    "refuse_websocket",
    "route_options",
]
