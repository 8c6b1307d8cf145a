"""Litestar's cached routes report their responses as FastAPI's do."""

from __future__ import annotations

import httpx
from litestar import Litestar, get
from litestar.exceptions import HTTPException
from litestar.params import FromPath  # noqa: TC002 - Litestar reads annotations at runtime
from prometheus_client import CollectorRegistry

from atomcache_core import Cache
from atomcache_core.observability import PrometheusObserver
from atomcache_litestar import AtomCachePlugin, cached
from http_scenarios import EACH_OUTCOME, ask_each_outcome


@get("/items/{item_id:int}")
@cached(ttl=60)
async def item(item_id: FromPath[int]) -> dict[str, int]:
    """A public route."""
    return {"id": item_id}


@get("/broken")
@cached(ttl=60)
async def broken() -> dict[str, int]:
    """A 5xx answer: sent, never stored."""
    raise HTTPException(status_code=503)


async def test_each_response_is_counted_by_route_and_outcome() -> None:
    """Computed, hit, 304 (a hit), a bypass with its reason, and a 5xx not stored."""
    registry = CollectorRegistry()
    cache = Cache(namespace="shop", observers=[PrometheusObserver(registry)])
    app = Litestar([item, broken], plugins=[AtomCachePlugin(cache)])
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]  # Litestar types its scopes
    async with (
        app.lifespan(),
        httpx.AsyncClient(transport=transport, base_url="http://t") as client,
    ):
        await ask_each_outcome(client)

    seen = {
        (sample.labels["route"], sample.labels["outcome"], sample.labels["reason"]): sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name == "atomcache_http_responses_total"
    }
    assert seen == EACH_OUTCOME
