"""AtomCachePlugin: dependency injection, lifespan, invalidation helper errors."""

from __future__ import annotations

import httpx
import pytest
from litestar import Litestar, get
from litestar.di import NamedDependency  # noqa: TC002 - Litestar reads annotations at run time

from atomcache_core import Cache, ConfigurationError
from atomcache_litestar import AtomCachePlugin
from support.servers import serve_asgi


@get("/namespace")
async def namespace_of(cache: NamedDependency[Cache]) -> dict[str, str]:
    """Tell the namespace of the injected cache."""
    return {"namespace": cache.namespace}


async def test_handlers_receive_the_cache_and_the_app_closes_it(
    redis_url: str, namespace: str
) -> None:
    """The cache is injected as `cache`, and closed with the app's lifespan."""
    cache = Cache.from_url(redis_url, namespace=namespace)
    app = Litestar([namespace_of], plugins=[AtomCachePlugin(cache)])
    async with serve_asgi(app) as base_url, httpx.AsyncClient(base_url=base_url) as client:
        assert (await client.get("/namespace")).json() == {"namespace": namespace}
        assert cache.redis_client is not None
    assert cache.redis_client is None


async def test_invalidating_before_startup_or_an_unknown_route_is_refused() -> None:
    """The helper says what is wrong: not started yet, or no such cached route."""
    plugin = AtomCachePlugin(Cache())
    app = Litestar([namespace_of], plugins=[plugin])
    with pytest.raises(ConfigurationError, match="not started"):
        await plugin.invalidate("/namespace")
    async with serve_asgi(app):
        with pytest.raises(ConfigurationError, match="no @cached route"):
            await plugin.invalidate("/namespace")
