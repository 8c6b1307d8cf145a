"""The startup check of http_startup.py against the Litestar adapter: `AtomCachePlugin(check=)`."""

from __future__ import annotations

from litestar import Litestar, get

from atomcache_core import Cache  # noqa: TC001 - Litestar reads annotations at run time
from atomcache_litestar import AtomCachePlugin, cached
from http_startup import startup_check_tests


@get("/items")
@cached(ttl=60)
async def items() -> list[int]:
    """The cached route."""
    return [1, 2]


def build(cache: Cache, *, check: bool) -> Litestar:
    """An app with one cached route, `GET /items`."""
    return Litestar([items], plugins=[AtomCachePlugin(cache, check=check)])


(
    test_the_check_fails_the_startup_on_refused_credentials,
    test_without_the_check_the_app_starts_and_serves_uncached,
    test_the_check_passes_when_redis_answers,
) = startup_check_tests(build, "Litestar")
