"""A real nginx `proxy_cache` in front of each adapter never hands one user's page to another.

nginx (Debian's package, installed when missing) caches what the app's `Cache-Control`
allows, with its default key (scheme, proxied host, request URI): it does not know who
asked. Entries that depend on credentials must therefore reach it `private` (HTTP.md
2.2), while shared entries are still cached by it.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from atomcache_core import Cache
from support.nginx import nginx_cache, nginx_or_skip
from support.servers import serve_asgi

if TYPE_CHECKING:
    from collections.abc import Callable

TESTS = Path(__file__).parent
sys.path[:0] = [str(TESTS / "fastapi"), str(TESTS / "litestar")]

# The body is bounded; the fixture bounds its own wait (it may install nginx).
pytestmark = pytest.mark.timeout(60, func_only=True)


def fastapi_app(cache: Cache) -> Any:
    """The FastAPI scenario app."""
    from fastapi_app import build_app  # noqa: PLC0415 - the adapters' test apps, on the path above

    return build_app(cache, Counter(), {})


def litestar_app(cache: Cache) -> Any:
    """The Litestar scenario app."""
    from litestar_app import build_app  # noqa: PLC0415 - the adapters' test apps, on the path above

    return build_app(cache, Counter(), {})[0]


@pytest.fixture(scope="module", autouse=True)
def nginx() -> str:
    """nginx, installed if missing; the module is skipped, saying why, where it cannot be."""
    return nginx_or_skip()


@pytest.mark.parametrize("build", [fastapi_app, litestar_app], ids=["fastapi", "litestar"])
async def test_per_user_pages_never_reach_another_user_through_nginx(
    build: Callable[[Cache], Any], namespace: str
) -> None:
    """Through nginx, each user and the anonymous client get only their own page.

    nginx may keep the anonymous page of a route that reads cookies without keying on
    them (`/me`), never a page that depends on credentials.
    """
    app = build(Cache.from_url("memory://", namespace=namespace))
    async with serve_asgi(app) as upstream:
        with nginx_cache(upstream) as url:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                shared = [await client.get("/shared") for _ in range(2)]
                assert shared[1].headers["x-nginx-cache"] == "HIT"  # nginx does cache
                for path, header, users, personal in (
                    ("/per-user", "authorization", ("Bearer alice", "Bearer bob"), True),
                    ("/me", "cookie", ("session=a", "session=b"), False),
                    ("/me/keyed", "cookie", ("session=a", "session=b"), True),
                    ("/profile/by-key", "x-api-key", ("k1", "k2"), True),
                ):
                    pages: dict[str, str] = {}
                    for _ in range(2):
                        for user in (*users, None):
                            headers = {header: user} if user else {}
                            response = await client.get(path, headers=headers)
                            assert response.status_code == 200
                            body = response.json()
                            page = str(body.get("auth", body.get("name", body.get("key"))))
                            assert pages.setdefault(str(user), page) == page, (path, user)
                            hit = response.headers["x-nginx-cache"] == "HIT"
                            assert not hit or (user is None and not personal), (path, user)
                    assert len(set(pages.values())) == len(pages), (path, pages)
