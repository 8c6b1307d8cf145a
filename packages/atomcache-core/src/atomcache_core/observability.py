"""Metrics and traces of what a cache does: OpenTelemetry and Prometheus, when installed.

Every `Cache` reports its events to an `Observer`. By default (`Cache(observers=None)`)
that is one `OpenTelemetryObserver` if `opentelemetry-api` is installed
(`pip install atomcache-core[otel]`) and one `PrometheusObserver` if `prometheus-client`
is (`[prometheus]`); with neither, nothing is imported and the cache has no observer at
all (`cache.observer is None`), so reporting costs one attribute check per event.
`Cache(observers=())` turns reporting off; `Cache(observers=[...])` chooses.

The events, each with its attributes (never a key, a value or a credential); the
OpenTelemetry name first, then the Prometheus one:

- a read of an entry: counter `atomcache.lookups`, `atomcache_lookups_total`;
  namespace, outcome (`hit`, `stale`, `miss`);
- a computation (a factory, or an HTTP handler): histogram in seconds
  `atomcache.computation.duration`, `atomcache_computation_duration_seconds`, and a
  span `atomcache compute`; namespace, outcome (`stored`, `uncached`, `failed`);
- a wait for another process's computation: histogram in seconds
  `atomcache.wait.duration`, `atomcache_wait_duration_seconds`, and a span
  `atomcache wait`; namespace, wakeup (`notified`, `rechecked`, `found`: stored before
  the wait began, `lead`: the lock came free and this caller computes, `skipped`,
  `timeout`, `failed`);
- a lock taken over from a holder that vanished: counter `atomcache.lock.takeovers`,
  `atomcache_lock_takeovers_total`; namespace;
- an error the cache failed open on: counter `atomcache.errors`,
  `atomcache_errors_total`; namespace, error.type (the exception's class name);
- a circuit breaker opening or closing: counter
  `atomcache.circuit_breaker.transitions`,
  `atomcache_circuit_breaker_transitions_total`; namespace, state (`open`, `closed`);
- a response of a cached HTTP route: counter `atomcache.http.responses`,
  `atomcache_http_responses_total`; namespace, http.route (the path template), outcome
  (`hit`, `stale`, `computed`, `coalesced`, `uncached`, `bypass`), reason (why it was
  not stored or was bypassed, as `Cache-Status` says; else empty).

Names and attributes follow OpenTelemetry's semantic-convention style (a dotted
namespace, units in seconds, `error.type`, `http.route`); the Prometheus names are the
same with `_` and the unit or `_total` suffix.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from typing import TYPE_CHECKING, Any, Protocol

from atomcache_core._version import __version__

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = [
    "Attributes",
    "Observer",
    "OpenTelemetryObserver",
    "PrometheusObserver",
    "default_observer",
    "observer_of",
]

logger = logging.getLogger("atomcache")

#: Attributes of one event: `(name, value)` pairs, in a fixed order (hashable, so that
#: exporters can keep what they derive from them).
Attributes = tuple[tuple[str, str], ...]

_COUNTERS = {
    "lookups": ("{lookup}", "Reads of an entry, by outcome (hit, stale, miss)."),
    "lock.takeovers": ("{takeover}", "Single-flight locks taken from a vanished holder."),
    "errors": ("{error}", "Backend errors and failed computations the cache failed open on."),
    "circuit_breaker.transitions": ("{transition}", "Circuit breaker state changes."),
    "http.responses": ("{response}", "Responses of cached HTTP routes, by outcome."),
}
_HISTOGRAMS = {
    "computation.duration": "Time a computation (factory or handler) took.",
    "wait.duration": "Time a caller waited for another process's computation.",
}
#: Bucket bounds of both histograms, in seconds: 1 ms to 1 minute.
BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Observer(Protocol):
    """Receives a cache's events (see the module's table for names and attributes)."""

    def add(self, name: str, attributes: Attributes) -> None:
        """Count one event of counter `name`."""

    def record(self, name: str, seconds: float, attributes: Attributes) -> None:
        """Record a duration of histogram `name`, in seconds."""

    def span(self, name: str, attributes: Attributes) -> contextlib.AbstractContextManager[Any]:
        """A span around a computation or a wait (a no-op where there are no traces)."""


class _Counts:
    """Cumulative counts of events, by counter and attributes, read when metrics are collected.

    Counting is a dict update (no exporter work per event): the exporters read the
    totals as asynchronous (observable) counters when they collect, the way
    OpenTelemetry and Prometheus expect cumulative counters to be read.
    """

    def __init__(self) -> None:
        self.values: dict[str, dict[Attributes, int]] = {name: {} for name in _COUNTERS}

    def add(self, name: str, attributes: Attributes) -> None:
        values = self.values[name]
        values[attributes] = values.get(attributes, 0) + 1


class OpenTelemetryObserver:
    """Reports to OpenTelemetry: metrics through a meter, spans through a tracer.

    Counters are asynchronous (observable) counters, read when the SDK collects; the
    instruments are made once per meter provider and shared by every cache reporting
    to it (each cache's namespace is an attribute).

    Args:
        meter_provider: Where the metrics go; default: the global one
            (`opentelemetry.metrics.get_meter_provider()`, a no-op until the
            application installs an SDK).
        tracer_provider: Where the spans go; default: the global one.

    Raises:
        ImportError: `opentelemetry-api` is not installed (`pip install atomcache-core[otel]`).
    """

    _made: dict[int, tuple[Any, _Counts, dict[str, Any]]] = {}  # noqa: RUF012 - per provider

    def __init__(
        self, meter_provider: Any = None, tracer_provider: Any = None, *, counts: Any = None
    ) -> None:
        """Find or make the instruments (reading `counts`, if given, when they are new)."""
        try:
            from opentelemetry import metrics, trace  # noqa: PLC0415 - an optional extra
        except ImportError as exc:  # pragma: no cover - the extra is installed in tests
            msg = "OpenTelemetryObserver needs opentelemetry-api: pip install atomcache-core[otel]"
            raise ImportError(msg) from exc

        provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        made = OpenTelemetryObserver._made.get(id(provider))
        if made is None or made[0] is not provider:
            meter = provider.get_meter("atomcache", __version__)
            made = (provider, *_otel_instruments(metrics, meter, counts or _Counts()))
            OpenTelemetryObserver._made[id(provider)] = made
        _, self.counts, self._histograms = made
        tracers = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        self._tracer = tracers.get_tracer("atomcache", __version__)

    def add(self, name: str, attributes: Attributes) -> None:
        """Add one to the counter."""
        self.counts.add(name, attributes)

    def record(self, name: str, seconds: float, attributes: Attributes) -> None:
        """Record the duration."""
        self._histograms[name].record(seconds, _otel_attributes(attributes))

    def span(self, name: str, attributes: Attributes) -> contextlib.AbstractContextManager[Any]:
        """An OpenTelemetry span, current while the block runs."""
        span: contextlib.AbstractContextManager[Any] = self._tracer.start_as_current_span(
            f"atomcache {name}", attributes=_otel_attributes(attributes)
        )
        return span


def _otel_instruments(metrics: Any, meter: Any, counts: _Counts) -> tuple[_Counts, dict[str, Any]]:
    """Observable counters reading `counts`, and the histograms, made on `meter`."""

    def reader(name: str) -> Any:
        def observe(_options: Any) -> list[Any]:
            return [
                metrics.Observation(value, _otel_attributes(attributes))
                for attributes, value in list(counts.values[name].items())
            ]

        return observe

    for name, (unit, text) in _COUNTERS.items():
        meter.create_observable_counter(
            f"atomcache.{name}", callbacks=[reader(name)], unit=unit, description=text
        )
    histograms = {
        name: meter.create_histogram(
            f"atomcache.{name}",
            unit="s",
            description=text,
            explicit_bucket_boundaries_advisory=list(BUCKETS),
        )
        for name, text in _HISTOGRAMS.items()
    }
    return counts, histograms


def _otel_attributes(attributes: Attributes) -> dict[str, str]:
    """Attributes under their OpenTelemetry names."""
    return {_OTEL_NAMES.get(name, name): value for name, value in attributes}


#: The attribute names in OpenTelemetry, where they differ from the short ones.
_OTEL_NAMES = {
    "namespace": "atomcache.namespace",
    "outcome": "atomcache.outcome",
    "wakeup": "atomcache.wakeup",
    "state": "atomcache.circuit_breaker.state",
    "reason": "atomcache.reason",
}


class PrometheusObserver:
    """Reports to Prometheus: counters and histograms in a registry.

    The metrics are made once per registry and shared by every cache reporting to it
    (each cache's `namespace` is a label), so several caches in one process never
    register a name twice. Counters are read from atomcache's totals when the registry
    is collected (a scrape); histograms are `prometheus_client.Histogram`s.

    Under `prometheus_client`'s multiprocess mode (`PROMETHEUS_MULTIPROC_DIR` set
    before it is imported: one endpoint for several gunicorn workers), the counters are
    `prometheus_client.Counter`s instead, counted per event into the shared files (about
    a microsecond each), so that the endpoint's `MultiProcessCollector` sums them over
    the workers like the histograms.

    Args:
        registry: Where the metrics are registered; default: `prometheus_client.REGISTRY`,
            which `prometheus_client.start_http_server` and the ASGI app
            `prometheus_client.make_asgi_app()` expose.

    Raises:
        ImportError: `prometheus-client` is not installed
            (`pip install atomcache-core[prometheus]`).
    """

    _made: dict[int, tuple[Any, _Counts | _SharedCounts, dict[str, Any]]] = {}  # noqa: RUF012 - per registry

    def __init__(self, registry: Any = None, *, counts: Any = None) -> None:
        """Find or make the metrics in `registry` (reading `counts`, if given, when new)."""
        try:
            import prometheus_client  # noqa: PLC0415 - an optional extra
        except ImportError as exc:  # pragma: no cover - the extra is installed in tests
            msg = (
                "PrometheusObserver needs prometheus-client: pip install atomcache-core[prometheus]"
            )
            raise ImportError(msg) from exc
        registry = registry if registry is not None else prometheus_client.REGISTRY
        made = PrometheusObserver._made.get(id(registry))
        if made is None or made[0] is not registry:
            made = (
                registry,
                *_prometheus_metrics(prometheus_client, registry, counts or _Counts()),
            )
            PrometheusObserver._made[id(registry)] = made
        _, self.counts, histograms = made
        self._histograms = _Children(histograms)

    def add(self, name: str, attributes: Attributes) -> None:
        """Add one to the counter."""
        self.counts.add(name, attributes)

    def record(self, name: str, seconds: float, attributes: Attributes) -> None:
        """Observe the duration."""
        self._histograms.of(name, attributes).observe(seconds)

    def span(self, name: str, attributes: Attributes) -> contextlib.AbstractContextManager[Any]:  # noqa: ARG002 - Prometheus has no traces
        """No span: Prometheus has metrics only."""
        return contextlib.nullcontext()


#: The label names in Prometheus, where they differ from the short ones.
_PROMETHEUS_NAMES = {"error.type": "error_type", "http.route": "route"}
_LABELS = {
    "lookups": ("namespace", "outcome"),
    "lock.takeovers": ("namespace",),
    "errors": ("namespace", "error_type"),
    "circuit_breaker.transitions": ("namespace", "state"),
    "http.responses": ("namespace", "route", "outcome", "reason"),
    "computation.duration": ("namespace", "outcome"),
    "wait.duration": ("namespace", "wakeup"),
}


def _prometheus_labels(name: str, attributes: Attributes) -> list[str]:
    """The label values of metric `name` for `attributes`, in `_LABELS` order ("" if unset)."""
    found = {_PROMETHEUS_NAMES.get(key, key): value for key, value in attributes}
    return [found.get(label, "") for label in _LABELS[name]]


class _Children:
    """Labelled children of Prometheus metrics, made once per name and attributes."""

    def __init__(self, metrics: dict[str, Any]) -> None:
        self._metrics = metrics
        self._made: dict[tuple[str, Attributes], Any] = {}

    def of(self, name: str, attributes: Attributes) -> Any:
        """The child of metric `name` for `attributes`."""
        child = self._made.get((name, attributes))
        if child is None:
            labels = _prometheus_labels(name, attributes)
            child = self._made[name, attributes] = self._metrics[name].labels(*labels)
        return child


class _SharedCounts:
    """Counts kept in `prometheus_client`'s multiprocess files, one increment per event."""

    def __init__(self, counters: dict[str, Any]) -> None:
        self._counters = _Children(counters)

    def add(self, name: str, attributes: Attributes) -> None:
        self._counters.of(name, attributes).inc()


def _multiprocess() -> bool:
    """Whether `prometheus_client` keeps its values in multiprocess files."""
    from prometheus_client import values  # noqa: PLC0415 - an optional extra

    return values.ValueClass is not values.MutexValue


def _prometheus_metrics(
    client: Any, registry: Any, counts: _Counts
) -> tuple[_Counts | _SharedCounts, dict[str, Any]]:
    """The counters and the histograms, in `registry`.

    The counters are a collector reading `counts` at each scrape, or `Counter`s in
    multiprocess mode.
    """
    from prometheus_client.core import CounterMetricFamily  # noqa: PLC0415 - an optional extra

    class Counters:
        """atomcache's counters, as Prometheus reads them at a scrape."""

        def collect(self) -> Iterator[Any]:
            for name, (_, text) in _COUNTERS.items():
                family = CounterMetricFamily(
                    f"atomcache_{name.replace('.', '_')}", text, labels=_LABELS[name]
                )
                for attributes, total in list(counts.values[name].items()):
                    family.add_metric(_prometheus_labels(name, attributes), total)
                yield family

        def describe(self) -> list[Any]:
            return []

    counted: _Counts | _SharedCounts = counts
    if _multiprocess():
        counted = _SharedCounts(
            {
                name: client.Counter(
                    f"atomcache_{name.replace('.', '_')}", text, _LABELS[name], registry=registry
                )
                for name, (_, text) in _COUNTERS.items()
            }
        )
    else:
        registry.register(Counters())
    histograms = {
        name: client.Histogram(
            f"atomcache_{name.replace('.', '_')}_seconds",
            text,
            _LABELS[name],
            registry=registry,
            buckets=BUCKETS,
        )
        for name, text in _HISTOGRAMS.items()
    }
    return counted, histograms


#: The totals the global meter provider and the default registry read: one count per event.
_DEFAULT_COUNTS = _Counts()


class _Fanout:
    """Several observers as one; exporters reading the same totals are counted once."""

    def __init__(self, observers: list[Observer]) -> None:
        self._observers = observers
        stores = [getattr(observer, "counts", None) for observer in observers]
        self._stores = list({id(store): store for store in stores if store is not None}.values())
        self._others = [observer for observer in observers if not hasattr(observer, "counts")]

    def add(self, name: str, attributes: Attributes) -> None:
        for store in self._stores:
            store.add(name, attributes)
        for observer in self._others:
            observer.add(name, attributes)

    def record(self, name: str, seconds: float, attributes: Attributes) -> None:
        for observer in self._observers:
            observer.record(name, seconds, attributes)

    @contextlib.contextmanager
    def span(self, name: str, attributes: Attributes) -> Iterator[None]:
        with contextlib.ExitStack() as spans:
            for observer in self._observers:
                spans.enter_context(observer.span(name, attributes))
            yield


def default_observer() -> Observer | None:
    """What `Cache()` reports to: the installed exporters, else `None` (nothing imported).

    Whether a library is installed is asked without importing it
    (`importlib.util.find_spec`); one that is installed but fails to import is left out,
    with a warning on the `atomcache` logger.
    """
    found: list[Observer] = []
    for module, make in (
        ("opentelemetry", OpenTelemetryObserver),
        ("prometheus_client", PrometheusObserver),
    ):
        if importlib.util.find_spec(module) is None:
            continue
        try:
            found.append(make(counts=_DEFAULT_COUNTS))
        except ImportError as exc:  # installed, but broken: the cache works without it
            logger.warning(
                "%s is installed but cannot be imported (%s): not reporting to it", module, exc
            )
    return observer_of(found)


def observer_of(observers: Iterable[Observer]) -> Observer | None:
    """One observer for `observers`: `None` when there are none."""
    found = list(observers)
    if not found:
        return None
    return found[0] if len(found) == 1 else _Fanout(found)
