"""The shared HTTP scenarios (HTTP.md) against the FastAPI adapter, on a real server."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from fastapi_app import build_app, build_compressed, build_mounted

from atomcache_fastapi import invalidate
from http_scenarios import GUARDED, Invalidate, adapter_tests

if TYPE_CHECKING:
    from collections import Counter

    from atomcache_core import Cache


def build(
    cache: Cache, calls: Counter[str], flags: dict[str, Any], layout: str
) -> tuple[Any, Invalidate]:
    """The scenario app and its invalidation helper."""
    app = build_app(cache, calls, flags, layout)
    return app, functools.partial(invalidate, app)


(
    harness,
    test_http_behaviour,
    test_redis_down_fails_open,
    test_mounts,
    test_middleware,
) = adapter_tests(build, "FastAPI", GUARDED, build_mounted, build_compressed)
