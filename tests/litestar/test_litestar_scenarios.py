"""The shared HTTP scenarios (HTTP.md) against the Litestar adapter, on a real server."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar_app import build_app

from http_scenarios import Invalidate, adapter_tests

if TYPE_CHECKING:
    from collections import Counter

    from atomcache_core import Cache


def build(cache: Cache, calls: Counter[str], flags: dict[str, Any]) -> tuple[Any, Invalidate]:
    """The scenario app and its plugin's invalidation helper."""
    app, plugin = build_app(cache, calls, flags)
    return app, plugin.invalidate


harness, test_http_behaviour, test_redis_down_fails_open = adapter_tests(build, "Litestar")
