"""One call per event: the cache's counters (`CacheStats`) and its observer's metrics.

Every event the cache reports goes through one method of `Telemetry`, which counts it
in `stats` and, when an observer is installed, adds it to the metric of that name
(the names below, the instruments of `atomcache_core.observability`). Also here: the
log limiter of the warnings the cache fails open with (`warn_failed_open`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from typing import TYPE_CHECKING

from atomcache_core.exceptions import BackendError
from atomcache_core.stats import CacheStats

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from atomcache_core.observability import Attributes, Observer

__all__ = [
    "BREAKER_TRANSITIONS",
    "COMPUTATION_DURATION",
    "ERRORS",
    "FAILED_OPEN_LOG_INTERVAL",
    "HTTP_RESPONSES",
    "LOCK_TAKEOVERS",
    "LOOKUPS",
    "WAIT_DURATION",
    "Telemetry",
    "warn_failed_open",
]

logger = logging.getLogger("atomcache")

#: Reads by outcome (`hit`, `stale`, `miss`).
LOOKUPS = "lookups"
#: Errors the cache failed open on, by `error.type`.
ERRORS = "errors"
#: Locks taken after their owner went silent.
LOCK_TAKEOVERS = "lock.takeovers"
#: The circuit breaker's changes, by `state`.
BREAKER_TRANSITIONS = "circuit_breaker.transitions"
#: HTTP responses by route, outcome and reason.
HTTP_RESPONSES = "http.responses"
#: Seconds a computation took, by `outcome` (and its span, `compute`).
COMPUTATION_DURATION = "computation.duration"
#: Seconds a wait for another process took, by `wakeup` (and its span, `wait`).
WAIT_DURATION = "wait.duration"


class Telemetry:
    """The counters and the observer of one cache: one method per event.

    Attributes:
        stats: The counters (`Cache.stats`).
        observer: Where metrics and spans go; `None`: only the counters count.
        namespace: The cache's namespace, an attribute of every metric.
    """

    __slots__ = ("_lookups", "_namespaced", "namespace", "observer", "stats")

    def __init__(self, namespace: str, observer: Observer | None) -> None:
        """Count from zero for `namespace`, reporting to `observer` too."""
        self.stats = CacheStats()
        self.observer = observer
        self.namespace = namespace
        self._namespaced: Attributes = (("namespace", namespace),)
        self._lookups: dict[str, Attributes] = {
            outcome: (("namespace", namespace), ("outcome", outcome))
            for outcome in ("hit", "stale", "miss")
        }

    def hit(self) -> None:
        """A read found a fresh value."""
        self.stats.hits += 1
        if self.observer is not None:
            self.observer.add(LOOKUPS, self._lookups["hit"])

    def stale_hit(self) -> None:
        """A read answered with an expired value (a stale window)."""
        self.stats.stale_hits += 1
        if self.observer is not None:
            self.observer.add(LOOKUPS, self._lookups["stale"])

    def miss(self) -> None:
        """A read found nothing usable."""
        self.stats.misses += 1
        if self.observer is not None:
            self.observer.add(LOOKUPS, self._lookups["miss"])

    def corrupt(self) -> None:
        """Stored bytes could not be decoded (counted as a miss by the read too)."""
        self.stats.corrupt += 1

    def computation(self) -> None:
        """A factory was called."""
        self.stats.computations += 1

    def wait(self) -> None:
        """A caller began to wait for another process's computation."""
        self.stats.waits += 1

    def woken(self, by: str) -> None:
        """A wait found the value, after a `"notification"` or a `"recheck"`."""
        if by == "notification":
            self.stats.wakeups_notified += 1
        elif by == "recheck":
            self.stats.wakeups_rechecked += 1

    def lock_takeover(self) -> None:
        """A lock was taken after its owner went silent."""
        self.stats.lock_takeovers += 1
        if self.observer is not None:
            self.observer.add(LOCK_TAKEOVERS, self._namespaced)

    def error(self, error_type: str) -> None:
        """An error the cache failed open on; `error_type` is its class name, or `_OTHER`."""
        self.stats.errors += 1
        if self.observer is not None:
            self.observer.add(ERRORS, (*self._namespaced, ("error.type", error_type)))

    def breaker(self, state: str) -> None:
        """The circuit breaker changed to `state` (`open` or `closed`)."""
        if self.observer is not None:
            self.observer.add(BREAKER_TRANSITIONS, (*self._namespaced, ("state", state)))

    def http_response(self, template: str, outcome: str, reason: str) -> None:
        """An HTTP response of the route `template`, by `outcome`, and why (`reason`)."""
        if self.observer is not None:
            attributes = (
                *self._namespaced,
                ("http.route", template),
                ("outcome", outcome),
                ("reason", reason),
            )
            self.observer.add(HTTP_RESPONSES, attributes)

    @contextlib.asynccontextmanager
    async def timed(self, span: str, histogram: str, attribute: str) -> AsyncIterator[list[str]]:
        """A span `span` around the block, and its duration in `histogram`.

        The duration is labelled `attribute`: what the block sets in the list it is
        given, else `failed` (it raised, or set nothing).
        """
        observer = self.observer
        ended = ["failed"]
        if observer is None:
            yield ended
            return
        started = time.monotonic()
        try:
            with observer.span(span, self._namespaced):
                yield ended
        finally:
            attributes = (*self._namespaced, (attribute, ended[0]))
            observer.record(histogram, time.monotonic() - started, attributes)


#: Seconds between two warnings of one kind the cache failed open with.
FAILED_OPEN_LOG_INTERVAL = 1.0
#: Per kind of warning (its format): when it was last logged, and how many since were not.
_failed_open_logged: dict[str, tuple[float, int]] = {}


def warn_failed_open(message: str, *args: object, error: BaseException) -> None:
    """Log a warning that the cache went on without its backend.

    A `BackendError` (Redis away, or refusing: a full memory under `noeviction`, a
    permission) says in its message what failed and what to do: it is logged without a
    traceback, and at most once per `FAILED_OPEN_LOG_INTERVAL` seconds for each
    `message` (an outage would otherwise log a line per call, thousands a second); the
    next one logged says how many were left out. Any other error is logged every time,
    with its traceback.
    """
    if not isinstance(error, BackendError):
        logger.warning(message, *args, exc_info=error)
        return
    now = time.monotonic()
    last, left_out = _failed_open_logged.get(message, (-math.inf, 0))
    if now - last < FAILED_OPEN_LOG_INTERVAL:
        _failed_open_logged[message] = (last, left_out + 1)
        return
    _failed_open_logged[message] = (now, 0)
    more = f" ({left_out} more like this in the last {now - last:.0f} s)" if left_out else ""
    logger.warning(f"{message}: %s{more}", *args, error)  # noqa: G004 - the format, not a value
