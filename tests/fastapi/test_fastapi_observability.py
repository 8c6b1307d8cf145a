"""HTTP responses of cached routes, counted by outcome in both exporters."""

from __future__ import annotations

from typing import Annotated

import httpx
from fastapi import Depends, FastAPI, HTTPException
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry

from atomcache_core import Cache
from atomcache_core.observability import Observer, OpenTelemetryObserver, PrometheusObserver
from atomcache_fastapi import ResponseCache, cached, setup_cache
from http_scenarios import EACH_OUTCOME, ask_each_outcome
from support.observability_worker import otel_readings


async def test_each_response_is_counted_by_route_and_outcome() -> None:
    """Computed, hit, 304 (a hit), a bypass with its reason, and a 5xx not stored."""
    reader, registry = InMemoryMetricReader(), CollectorRegistry()
    observers: list[Observer] = [
        OpenTelemetryObserver(MeterProvider(metric_readers=[reader])),
        PrometheusObserver(registry),
    ]
    cache = Cache(namespace="shop", observers=observers)
    app = FastAPI()
    setup_cache(app, cache)

    @app.get("/items/{item_id}")
    @cached(ttl=60)
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @app.get("/broken")
    @cached(ttl=60)
    async def broken() -> dict[str, int]:
        raise HTTPException(status_code=503)  # a 5xx answer: sent, never stored

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        await ask_each_outcome(client)
    await cache.close()

    points = otel_readings(reader)["atomcache.http.responses"]
    seen = {
        (
            point["attributes"]["http.route"],
            point["attributes"]["atomcache.outcome"],
            point["attributes"]["atomcache.reason"],
        ): point["value"]
        for point in points
    }
    assert seen == EACH_OUTCOME
    assert {point["attributes"]["atomcache.namespace"] for point in points} == {"shop"}
    for (route, outcome, reason), count in EACH_OUTCOME.items():
        labels = {"namespace": "shop", "route": route, "outcome": outcome, "reason": reason}
        assert registry.get_sample_value("atomcache_http_responses_total", labels) == count


async def test_response_cache_routes_are_counted_too() -> None:
    """The original API's routes: computed, hit, not set (uncached) and bypassed."""
    registry = CollectorRegistry()
    cache = Cache(namespace="orig", observers=[PrometheusObserver(registry)])
    app = FastAPI()
    before = ResponseCache.backend
    try:
        await ResponseCache.init(app, cache)

        @app.get("/maybe")
        async def maybe(
            response_cache: Annotated[
                ResponseCache, Depends(ResponseCache(exp=60, cache_control=True))
            ],
            empty: bool = False,  # noqa: FBT001, FBT002 - a query parameter
        ) -> list[int]:
            await response_cache.raise_try(f"empty={empty}")
            if empty:
                return []  # set is not called: nothing stored
            return response_cache.set([1, 2], cache_id=f"empty={empty}")

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for query, headers in (("", {}), ("", {}), ("?empty=true", {}), ("", NO_CACHE)):
                assert (await client.get(f"/maybe{query}", headers=headers)).status_code == 200
    finally:
        await cache.close()
        ResponseCache.backend = before
    expected = {("computed", ""), ("hit", ""), ("uncached", "not set"), ("bypass", "no-cache")}
    for outcome, reason in expected:
        labels = {"namespace": "orig", "route": "/maybe", "outcome": outcome, "reason": reason}
        assert registry.get_sample_value("atomcache_http_responses_total", labels) == 1


NO_CACHE = {"cache-control": "no-cache"}
