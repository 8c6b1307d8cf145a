"""The startup check of http_startup.py against the FastAPI adapter: `setup_cache(check=)`."""

from __future__ import annotations

from fastapi import FastAPI

from atomcache_core import Cache  # noqa: TC001 - FastAPI reads annotations at run time
from atomcache_fastapi import cached, setup_cache
from http_startup import startup_check_tests


def build(cache: Cache, *, check: bool) -> FastAPI:
    """An app with one cached route, `GET /items`."""
    app = FastAPI()

    @app.get("/items")
    @cached(ttl=60)
    async def items() -> list[int]:
        return [1, 2]

    setup_cache(app, cache, check=check)
    return app


(
    test_the_check_fails_the_startup_on_refused_credentials,
    test_without_the_check_the_app_starts_and_serves_uncached,
    test_the_check_passes_when_redis_answers,
) = startup_check_tests(build, "FastAPI")
