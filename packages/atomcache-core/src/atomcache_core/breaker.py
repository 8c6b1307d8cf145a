"""A circuit breaker: stop calling a backend that keeps failing, probe it later."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["CircuitBreaker"]

BreakerState = Literal["closed", "open", "half-open"]


class CircuitBreaker:
    """Counts consecutive failures of a backend and opens after `failure_threshold`.

    While open, calls are refused at once (no connection attempt, no timeout to wait
    for). After `reset_timeout` seconds one call goes through as a probe: success
    closes the breaker, failure opens it for another `reset_timeout`.

    On a Redis Cluster each node gets a breaker of its own (`for_node`), with the same
    settings: a dead master stops the calls for its slots only, and the replica that
    replaces it starts with a closed breaker.

    Args:
        failure_threshold: Consecutive failures that open the breaker.
        reset_timeout: Seconds the breaker stays open before probing.
    """

    def __init__(self, failure_threshold: int = 5, reset_timeout: float = 5.0) -> None:
        """Start closed."""
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self.failures = 0
        self._opened_at: float | None = None
        self._probing = False
        self._nodes: dict[str, CircuitBreaker] = {}
        #: The last failure's error, when its caller gave one (`record_failure`), until a
        #: success: calls refused while the breaker is open say what it was.
        self.last_error: Exception | None = None
        #: Called with `"open"` or `"closed"` when the breaker changes state (metrics).
        self.on_change: Callable[[str], None] | None = None

    def for_node(self, name: str) -> CircuitBreaker:
        """The breaker of one cluster node (`host:port`), created closed on first use."""
        breaker = self._nodes.get(name)
        if breaker is None:
            breaker = self._nodes[name] = CircuitBreaker(self.failure_threshold, self.reset_timeout)
            breaker.on_change = self.on_change
        return breaker

    @property
    def state(self) -> BreakerState:
        """`closed` (calls go through), `open` (refused) or `half-open` (probing)."""
        if self._opened_at is None:
            return "closed"
        if self._probing or time.monotonic() - self._opened_at >= self.reset_timeout:
            return "half-open"
        return "open"

    @property
    def retry_in(self) -> float:
        """Seconds until the next probe (0 when closed)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self.reset_timeout - time.monotonic())

    def allow(self) -> bool:
        """Whether a call may go to the backend now (claims the probe when half-open)."""
        if self._opened_at is None:
            return True
        if not self._probing and time.monotonic() - self._opened_at >= self.reset_timeout:
            self._probing = True
            return True
        return False

    def record_success(self) -> None:
        """The backend answered: close."""
        was_open = self._opened_at is not None
        self.failures = 0
        self.last_error = None
        self._opened_at = None
        self._probing = False
        if was_open and self.on_change is not None:
            self.on_change("closed")

    def release_probe(self) -> None:
        """A call ended without telling whether the backend answers: the next may probe.

        A call cancelled, or refused for want of a free pooled connection, proves
        nothing either way; were it the half-open probe, the breaker would otherwise
        wait for its outcome forever.
        """
        self._probing = False

    def record_failure(self, error: Exception | None = None) -> None:
        """The backend could not be used (`error` says why): count, and open at the threshold."""
        self.failures += 1
        self.last_error = error
        if self._probing or self.failures >= self.failure_threshold:
            opens = self._opened_at is None
            self._opened_at = time.monotonic()
            if opens and self.on_change is not None:
                self.on_change("open")
        self._probing = False
