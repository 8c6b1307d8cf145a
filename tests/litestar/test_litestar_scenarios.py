"""The shared HTTP scenarios (HTTP.md) against the Litestar adapter, on a real server."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar_app import build_app, build_compressed, build_mounted

from http_scenarios import GUARDED, Invalidate, adapter_tests

if TYPE_CHECKING:
    from collections import Counter

    from atomcache_core import Cache


def build(
    cache: Cache, calls: Counter[str], flags: dict[str, Any], layout: str
) -> tuple[Any, Invalidate]:
    """The scenario app and its plugin's invalidation helper."""
    app, plugin = build_app(cache, calls, flags, layout)
    return app, plugin.invalidate


(
    harness,
    test_http_behaviour,
    test_redis_down_fails_open,
    test_mounts,
    test_middleware,
) = adapter_tests(
    build,
    "Litestar",
    (*GUARDED, "/guarded/middleware", "/guarded/before"),
    build_mounted,
    build_compressed,
)
