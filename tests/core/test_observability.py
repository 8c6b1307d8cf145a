"""Metrics and spans, read through the real OpenTelemetry SDK and a real Prometheus registry.

The fleet scenario runs 3 processes against one `redis-server`: a stampede on one key
(one computation, the other two processes waiting for it), hits, then Redis killed and
calls that fail open. Each process reads its own metrics back through both exporters
(tests/support/observability_worker.py); every counter is checked against the scenario
and against `cache.stats`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from atomcache_core import Cache
from atomcache_core.observability import (
    OpenTelemetryObserver,
    PrometheusObserver,
    default_observer,
)
from support.observability_worker import CALLERS, FAILING_CALLS, HITS, otel_readings
from support.redis_server import RedisServer

if TYPE_CHECKING:
    from collections.abc import Iterator

TESTS = Path(__file__).resolve().parents[1]
WORKER = TESTS / "support" / "observability_worker.py"
PROCESSES = 3
LINE_TIMEOUT = 60.0


def otel_total(readings: dict[str, list[dict[str, Any]]], name: str, **attributes: str) -> float:
    """The sum of a metric's points (value, or count for a histogram) with these attributes."""
    total = 0.0
    for point in readings.get(name, []):
        if all(point["attributes"].get(key) == value for key, value in attributes.items()):
            total += point.get("value", point.get("count", 0))
    return total


def prometheus_total(samples: list[dict[str, Any]], name: str, **labels: str) -> float:
    """The sum of a Prometheus sample's values with these labels."""
    return float(
        sum(
            sample["value"]
            for sample in samples
            if sample["name"] == name
            and all(sample["labels"].get(key) == value for key, value in labels.items())
        )
    )


class Worker:
    """One scenario process, driven line by line."""

    def __init__(self, config: dict[str, Any]) -> None:
        """Start it."""
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER), json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(TESTS)},
        )

    async def expect(self, line: str) -> None:
        """Wait for `line` on its output."""
        got = await self.read()
        assert got == line, f"expected {line!r}, the worker said {got!r}"

    async def read(self) -> str:
        """Its next line of output."""
        stdout = self.process.stdout
        assert stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(stdout.readline), LINE_TIMEOUT)
        return line.strip()

    def say(self, line: str) -> None:
        """Send it a line."""
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(line + "\n")
        stdin.flush()

    def stop(self) -> None:
        """Stop it by PID, whatever state it is in."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


@contextlib.contextmanager
def workers(url: str, namespace: str) -> Iterator[list[Worker]]:
    """The scenario's processes, stopped at the end."""
    started: list[Worker] = []
    try:
        for _ in range(PROCESSES):
            config = {"url": url, "namespace": namespace, "waiters": PROCESSES - 1}
            started.append(Worker(config))
        yield started
    finally:
        for worker in started:
            worker.stop()


@pytest.mark.timeout(180)
async def test_a_fleet_stampede_and_a_redis_kill_as_both_exporters_count_them() -> None:
    """Every counter, in both exporters, matches the scenario and `cache.stats`."""
    with (
        RedisServer() as server,
        workers(server.url, f"observed-{uuid.uuid4().hex[:8]}") as fleet,
    ):
        await asyncio.gather(*(worker.expect("ready") for worker in fleet))
        for worker in fleet:
            worker.say("go")
        await asyncio.gather(*(worker.expect("stampede done") for worker in fleet))
        server.kill()
        for worker in fleet:
            worker.say("Redis is gone")
        reports = [json.loads(await worker.read()) for worker in fleet]

    leaders = [report for report in reports if report["stats"]["waits"] == 0]
    assert len(leaders) == 1, [report["stats"] for report in reports]
    for report in reports:
        leader = report is leaders[0]
        check_lookups(report)
        check_computations_and_waits(report, leader=leader)
        check_errors_and_breaker(report)


def check_lookups(report: dict[str, Any]) -> None:
    """Hits, misses and stale hits of one process, in both exporters and `stats`."""
    stats, otel, prometheus = report["stats"], report["otel"], report["prometheus"]
    misses = CALLERS + FAILING_CALLS  # every stampede caller found nothing, then Redis was gone
    for outcome, value in (("hit", HITS), ("miss", misses), ("stale", 0)):
        assert otel_total(otel, "atomcache.lookups", **{"atomcache.outcome": outcome}) == value
        assert prometheus_total(prometheus, "atomcache_lookups_total", outcome=outcome) == value
    assert stats["hits"] == HITS
    assert stats["misses"] == misses
    assert stats["stale_hits"] == 0


def check_computations_and_waits(report: dict[str, Any], *, leader: bool) -> None:
    """One computation stored fleet-wide, the others computed unstored; one wait each."""
    stats, otel, prometheus = report["stats"], report["otel"], report["prometheus"]
    stored, uncached = (1 if leader else 0), FAILING_CALLS
    for outcome, count in (("stored", stored), ("uncached", uncached), ("failed", 0)):
        name = "atomcache.computation.duration"
        assert otel_total(otel, name, **{"atomcache.outcome": outcome}) == count
        prometheus_name = "atomcache_computation_duration_seconds_count"
        assert prometheus_total(prometheus, prometheus_name, outcome=outcome) == count
    assert stats["computations"] == stored + uncached

    waits = 0 if leader else 1
    assert stats["waits"] == waits
    assert stats["wakeups_notified"] == waits
    for wakeup in ("notified", "rechecked", "found", "lead", "skipped", "timeout", "failed"):
        count = waits if wakeup == "notified" else 0
        name = "atomcache.wait.duration"
        assert otel_total(otel, name, **{"atomcache.wakeup": wakeup}) == count
        prometheus_name = "atomcache_wait_duration_seconds_count"
        assert prometheus_total(prometheus, prometheus_name, wakeup=wakeup) == count

    assert stats["lock_takeovers"] == 0
    assert otel_total(otel, "atomcache.lock.takeovers") == 0
    assert prometheus_total(prometheus, "atomcache_lock_takeovers_total") == 0
    assert otel_total(otel, "atomcache.http.responses") == 0
    spans = Counter(span["name"] for span in report["spans"])
    assert spans == Counter({"atomcache compute": stored + uncached, "atomcache wait": waits})
    namespaces = {span["attributes"]["atomcache.namespace"] for span in report["spans"]}
    assert len(namespaces) == 1


def check_errors_and_breaker(report: dict[str, Any]) -> None:
    """Each failing call's read and lock failed; the breaker opened once, never closed."""
    stats, otel, prometheus = report["stats"], report["otel"], report["prometheus"]
    assert stats["errors"] == 2 * FAILING_CALLS
    assert otel_total(otel, "atomcache.errors") == 2 * FAILING_CALLS
    assert prometheus_total(prometheus, "atomcache_errors_total") == 2 * FAILING_CALLS
    kinds = {point["attributes"]["error.type"] for point in otel["atomcache.errors"]}
    assert kinds <= {"BackendError", "BackendUnavailableError"}, kinds
    name = "atomcache.circuit_breaker.transitions"
    prometheus_name = "atomcache_circuit_breaker_transitions_total"
    state = "atomcache.circuit_breaker.state"
    assert otel_total(otel, name, **{state: "open"}) == 1
    assert otel_total(otel, name, **{state: "closed"}) == 0
    assert prometheus_total(prometheus, prometheus_name, state="open") == 1
    assert prometheus_total(prometheus, prometheus_name, state="closed") == 0


def in_memory_observers() -> tuple[
    OpenTelemetryObserver, PrometheusObserver, InMemoryMetricReader, CollectorRegistry
]:
    """Both exporters, reading into memory."""
    reader = InMemoryMetricReader()
    tracing = TracerProvider()
    tracing.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    registry = CollectorRegistry()
    otel = OpenTelemetryObserver(MeterProvider(metric_readers=[reader]), tracing)
    return otel, PrometheusObserver(registry), reader, registry


async def test_stale_hits_and_a_lock_takeover_are_counted() -> None:
    """A stale entry served and a lock taken from a holder that never released it."""
    otel, prometheus, reader, registry = in_memory_observers()
    cache = Cache(observers=[otel, prometheus], lock_ttl=0.3, recheck_interval=0.1)

    async def compute() -> str:
        return "fresh"

    await cache.get_or_set("news", compute, ttl=0.05, stale_ttl=60)
    await asyncio.sleep(0.1)
    assert await cache.get_or_set("news", compute, ttl=0.05, stale_ttl=60) == "fresh"
    await cache.lock.acquire(cache.keys.lock("orphan"), 0.3)  # a holder that vanished
    assert await cache.get_or_set("orphan", compute, ttl=60) == "fresh"
    await cache.close()

    readings = otel_readings(reader)
    samples = [
        {"name": sample.name, "labels": dict(sample.labels), "value": sample.value}
        for family in registry.collect()
        for sample in family.samples
    ]
    assert cache.stats.stale_hits == 1
    assert otel_total(readings, "atomcache.lookups", **{"atomcache.outcome": "stale"}) == 1
    assert prometheus_total(samples, "atomcache_lookups_total", outcome="stale") == 1
    assert cache.stats.lock_takeovers == 1
    assert otel_total(readings, "atomcache.lock.takeovers") == 1
    assert prometheus_total(samples, "atomcache_lock_takeovers_total") == 1
    lead = {"atomcache.wakeup": "lead"}
    assert otel_total(readings, "atomcache.wait.duration", **lead) == 1
    assert prometheus_total(samples, "atomcache_wait_duration_seconds_count", wakeup="lead") == 1


def test_two_caches_share_one_registry_without_registering_twice() -> None:
    """Metrics are made once per registry; each cache's namespace is a label."""
    registry = CollectorRegistry()
    first, second = PrometheusObserver(registry), PrometheusObserver(registry)
    first.add("lookups", (("namespace", "a"), ("outcome", "hit")))
    second.add("lookups", (("namespace", "b"), ("outcome", "hit")))
    value = registry.get_sample_value
    assert value("atomcache_lookups_total", {"namespace": "a", "outcome": "hit"}) == 1
    assert value("atomcache_lookups_total", {"namespace": "b", "outcome": "hit"}) == 1


def run_ok(script: str) -> subprocess.CompletedProcess[str]:
    """Run `script` in a fresh interpreter; it must print "ok" and exit 0."""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    return done


def test_without_either_library_nothing_is_imported_and_nothing_reports() -> None:
    """With neither library importable, `Cache()` has no observer and imports neither."""
    script = (
        "import sys\n"
        "sys.modules['opentelemetry'] = None\n"
        "sys.modules['prometheus_client'] = None\n"
        "import importlib.util\n"
        "real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda name, *a: None if name in "
        "('opentelemetry', 'prometheus_client') else real(name, *a)\n"
        "from atomcache_core import Cache\n"
        "cache = Cache()\n"
        "assert cache.observer is None, cache.observer\n"
        "print('ok')\n"
    )
    run_ok(script)


def test_by_default_each_installed_library_gets_an_observer() -> None:
    """Both libraries are installed here: the default observer reports to both."""
    observer = default_observer()
    assert observer is not None
    assert type(observer).__name__ == "_Fanout"


DASHBOARD = TESTS.parent / "docs" / "assets" / "grafana" / "atomcache.json"


def test_the_grafana_dashboard_queries_only_metrics_and_labels_that_exist() -> None:
    """Every metric and label the dashboard's queries name is one PrometheusObserver makes."""
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)
    labels_of = {
        "lookups": (("namespace", "n"), ("outcome", "hit")),
        "lock.takeovers": (("namespace", "n"),),
        "errors": (("namespace", "n"), ("error.type", "E")),
        "circuit_breaker.transitions": (("namespace", "n"), ("state", "open")),
        "http.responses": (
            ("namespace", "n"),
            ("http.route", "/"),
            ("outcome", "hit"),
            ("reason", ""),
        ),
    }
    for name, attributes in labels_of.items():
        observer.add(name, attributes)
    observer.record("computation.duration", 0.1, (("namespace", "n"), ("outcome", "stored")))
    observer.record("wait.duration", 0.1, (("namespace", "n"), ("wakeup", "notified")))
    known: dict[str, set[str]] = {}
    for family in registry.collect():
        for sample in family.samples:
            known.setdefault(sample.name, set()).update(sample.labels)
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(expressions) >= 10
    for expression in expressions:
        for metric, selector in re.findall(r"(atomcache_\w+)(?:\{([^}]*)\})?", expression):
            assert metric in known, f"{metric} is not a metric atomcache makes"
            for label in re.findall(r"(\w+)\s*=~?", selector):
                assert label in known[metric], f"{metric} has no label {label}"
        for grouped in re.findall(r"by \(([^)]*)\)", expression):
            for label in (part.strip() for part in grouped.split(",")):
                assert any(label in names for names in known.values()), label


def test_a_library_installed_but_broken_is_left_out_with_a_warning() -> None:
    """`Cache()` works when an installed metrics library fails to import, and says so."""
    script = (
        "import sys, logging\n"
        "logging.basicConfig()\n"
        "sys.modules['prometheus_client'] = None  # installed, but its import fails\n"
        "import importlib.util\n"
        "real = importlib.util.find_spec\n"
        "spec = real('json')\n"
        "importlib.util.find_spec = lambda name, *a: spec if name == 'prometheus_client' "
        "else real(name, *a)\n"
        "from atomcache_core import Cache\n"
        "from atomcache_core.observability import OpenTelemetryObserver\n"
        "cache = Cache()\n"
        "assert isinstance(cache.observer, OpenTelemetryObserver), cache.observer\n"
        "print('ok')\n"
    )
    done = run_ok(script)
    assert "prometheus_client is installed but cannot be imported" in done.stderr


MULTIPROCESS_WORKER = """
import asyncio
from atomcache_core import Cache

async def main():
    cache = Cache(namespace="workers")  # in memory: each process computes once
    assert await cache.get_or_set("k", lambda: 1) == 1
    for _ in range(3):
        assert await cache.get("k") == 1
    await cache.close()

asyncio.run(main())
print("ok")
"""


def test_prometheus_multiprocess_mode_sums_the_counters_of_every_worker(tmp_path: Path) -> None:
    """Under `PROMETHEUS_MULTIPROC_DIR` the endpoint sums 3 workers' counters too.

    That is gunicorn's workers behind one metrics endpoint: its `MultiProcessCollector`
    reads the shared files, which held only the histograms before.
    """
    from prometheus_client.multiprocess import MultiProcessCollector  # noqa: PLC0415

    environment = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    started = [
        subprocess.Popen(
            [sys.executable, "-c", MULTIPROCESS_WORKER],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        for _ in range(3)
    ]
    try:
        for process in started:
            out, err = process.communicate(timeout=60)
            assert process.returncode == 0, err
            assert out.strip() == "ok"
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
                process.wait()
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))  # type: ignore[no-untyped-call]
    value = registry.get_sample_value
    lookups = {"namespace": "workers"}
    assert value("atomcache_lookups_total", {**lookups, "outcome": "miss"}) == 3
    assert value("atomcache_lookups_total", {**lookups, "outcome": "hit"}) == 9
    computed = {**lookups, "outcome": "stored"}
    assert value("atomcache_computation_duration_seconds_count", computed) == 3
