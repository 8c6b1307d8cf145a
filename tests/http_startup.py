"""The opt-in startup check, written once and run against every adapter.

`setup_cache(app, cache, check=True)` and `AtomCachePlugin(cache, check=True)` fail
the app's startup when the cache cannot be used (here: Redis refuses the password),
naming why; without `check` the app starts and its cached routes are answered by their
handlers, uncached, as they always were. The apps are driven through their ASGI
lifespan as a server drives them.

Each adapter's module passes `build(cache, check=...)`: its app with one cached route,
`GET /items`, answering `[1, 2]`.
"""

from __future__ import annotations

from typing import Any, Protocol

from atomcache_core import Cache
from support.redis_server import with_credentials
from support.servers import in_process, lifespan

WRONG = "not-the-password"


class BuildApp(Protocol):
    """Builds an adapter's app with its one cached route, `GET /items`."""

    def __call__(self, cache: Cache, *, check: bool) -> Any:
        """The app, serving from `cache`, its startup checking the cache if `check`."""


def startup_check_tests(build: BuildApp, framework: str) -> tuple[Any, Any, Any]:
    """The adapter module's tests of the startup check, given how it builds its app.

    Use as `test_a, test_b, test_c = startup_check_tests(build, "X")`.
    """

    async def test_the_check_fails_the_startup_on_refused_credentials(
        password_url: str, namespace: str
    ) -> None:
        cache = Cache.from_url(with_credentials(password_url, f":{WRONG}"), namespace=namespace)
        async with lifespan(build(cache, check=True)) as answer:
            assert answer["type"] == "lifespan.startup.failed"
            message = answer["message"]
            assert "rejected the credentials of redis://:***@127.0.0.1:" in message, message
            assert "Redis is running" not in message
            assert WRONG not in message
        assert cache.redis_client is None  # closed

    async def test_without_the_check_the_app_starts_and_serves_uncached(
        password_url: str, namespace: str
    ) -> None:
        cache = Cache.from_url(with_credentials(password_url, f":{WRONG}"), namespace=namespace)
        app = build(cache, check=False)
        async with lifespan(app) as answer, in_process(app) as client:
            assert answer["type"] == "lifespan.startup.complete"
            for _ in range(2):
                response = await client.get("/items")
                assert response.json() == [1, 2]
                assert "backend unavailable" in response.headers["cache-status"]

    async def test_the_check_passes_when_redis_answers(password_url: str, namespace: str) -> None:
        cache = Cache.from_url(password_url, namespace=namespace)
        app = build(cache, check=True)
        async with lifespan(app) as answer, in_process(app) as client:
            assert answer["type"] == "lifespan.startup.complete"
            await client.get("/items")
            assert (await client.get("/items")).headers["cache-status"].startswith("atomcache; hit")

    test_the_check_fails_the_startup_on_refused_credentials.__doc__ = (
        f"{framework} with check=True: Redis refusing the password fails the startup, saying so."
    )
    test_without_the_check_the_app_starts_and_serves_uncached.__doc__ = (
        f"{framework} without the check: a refused password leaves the app serving, uncached."
    )
    test_the_check_passes_when_redis_answers.__doc__ = (
        f"{framework} with check=True and the right password: the app starts and caches."
    )
    return (
        test_the_check_fails_the_startup_on_refused_credentials,
        test_without_the_check_the_app_starts_and_serves_uncached,
        test_the_check_passes_when_redis_answers,
    )
