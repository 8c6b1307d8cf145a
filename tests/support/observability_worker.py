"""One process of the observability scenario; its metrics, as the real exporters read them.

Started by tests/core/test_observability.py with a JSON config as its argument (`url`,
`namespace`, `waiters`: how many other processes the computation waits for). It
reports to the OpenTelemetry SDK (an in-memory metric reader and span exporter) and to
a Prometheus registry of its own, then:

1. prints "ready" and waits for a line on stdin;
2. a stampede: 5 concurrent `get_or_set("report", ...)` calls. The computation, in
   whichever process takes the lock, waits until `waiters` other processes are waiting
   for it (`PUBSUB NUMSUB` of the key's channel), so every other process's callers wait;
   then 3 `get("report")` hits; prints "stampede done" and waits for a line;
3. (the test has killed Redis) 3 `get_or_set` calls of other keys, which fail open;
4. prints one JSON line: every metric read through the OpenTelemetry SDK and the
   Prometheus registry, the spans, and `cache.stats`; then exits.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from atomcache_core import Cache
from atomcache_core.observability import Observer, OpenTelemetryObserver, PrometheusObserver

CALLERS = 5
HITS = 3
FAILING_CALLS = 3


def otel_readings(reader: InMemoryMetricReader) -> dict[str, list[dict[str, Any]]]:
    """Each OpenTelemetry metric's points: attributes, and value (counters) or count and sum."""
    found: dict[str, list[dict[str, Any]]] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data is not None else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points = found.setdefault(metric.name, [])
                for point in metric.data.data_points:
                    reading: dict[str, Any] = {"attributes": dict(point.attributes or {})}
                    if isinstance(point, HistogramDataPoint):
                        reading.update(count=point.count, sum=point.sum)
                    elif isinstance(point, NumberDataPoint):
                        reading["value"] = point.value
                    points.append(reading)
    return found


def prometheus_readings(registry: CollectorRegistry) -> list[dict[str, Any]]:
    """Every Prometheus sample of the registry: name, labels, value."""
    return [
        {"name": sample.name, "labels": dict(sample.labels), "value": sample.value}
        for family in registry.collect()
        for sample in family.samples
    ]


async def read_line() -> str:
    """The next line on stdin, without blocking the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


async def main(config: dict[str, Any]) -> None:
    """Run the scenario; print the readings."""
    reader = InMemoryMetricReader()
    spans = InMemorySpanExporter()
    tracing = TracerProvider()
    tracing.add_span_processor(SimpleSpanProcessor(spans))
    registry = CollectorRegistry()
    observers: list[Observer] = [
        OpenTelemetryObserver(MeterProvider(metric_readers=[reader]), tracing),
        PrometheusObserver(registry),
    ]
    cache = Cache.from_url(
        config["url"],
        namespace=config["namespace"],
        observers=observers,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
    )
    watcher = Redis.from_url(config["url"])
    channel = cache.keys.channel("report")

    async def compute_report() -> dict[str, int]:
        for _ in range(500):  # at most 10 s for the other processes to be waiting
            subscribed = await watcher.pubsub_numsub(channel)
            if subscribed[0][1] >= config["waiters"]:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        return {"rows": 42}

    print("ready", flush=True)  # noqa: T201 - the protocol with the test
    await read_line()
    await asyncio.gather(
        *(cache.get_or_set("report", compute_report, ttl=60) for _ in range(CALLERS))
    )
    for _ in range(HITS):
        await cache.get("report")
    await watcher.aclose()
    print("stampede done", flush=True)  # noqa: T201
    await read_line()

    async def compute_alone() -> str:
        return "computed without the cache"

    for number in range(FAILING_CALLS):
        await cache.get_or_set(f"while-down-{number}", compute_alone, ttl=60)
    print(  # noqa: T201
        json.dumps(
            {
                "otel": otel_readings(reader),
                "prometheus": prometheus_readings(registry),
                "spans": [
                    {"name": span.name, "attributes": dict(span.attributes or {})}
                    for span in spans.get_finished_spans()
                ],
                "stats": cache.stats.as_dict(),
            }
        ),
        flush=True,
    )
    await asyncio.wait_for(cache.close(), 10)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
