"""Redis errors translated in one table: redis-py's exceptions become atomcache's.

`translate_errors` wraps every call the Redis backends make; it is the only place that
knows redis-py's exception types, and the one that feeds the circuit breaker.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Literal, TypeAlias

from redis.asyncio.sentinel import MasterNotFoundError
from redis.exceptions import (
    AuthenticationError,
    AuthenticationWrongNumberOfArgsError,
    MaxConnectionsError,
    RedisClusterException,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from atomcache_core.backends.redis.urls import url_of
from atomcache_core.exceptions import (
    AtomCacheError,
    BackendAuthenticationError,
    BackendError,
    BackendUnavailableError,
)

if TYPE_CHECKING:
    from types import TracebackType

    from redis.asyncio import RedisCluster

    from atomcache_core.backends.redis.clients import RedisClient
    from atomcache_core.breaker import CircuitBreaker

__all__ = ["node_breaker", "translate_errors"]


class translate_errors:  # noqa: N801 - used like a function: `with translate_errors("GET", ...):`
    """Turn redis-py and socket exceptions into `BackendError` subclasses.

    `client` is the client the call uses: a message about its credentials names its
    URL (password redacted, `url_of`). With a `CircuitBreaker`, a call is refused at
    once while it is open, and every outcome is recorded: unreachable, or credentials
    refused, counts as a failure, any other answer (even an error reply) as a success.
    A call that tells neither (cancelled, or refused for want of a free pooled
    connection) records nothing, but gives up the half-open probe.
    """

    __slots__ = ("_breaker", "_client", "_operation")

    def __init__(
        self, operation: str, client: RedisClient, breaker: CircuitBreaker | None = None
    ) -> None:
        """Translate what `operation`, on `client`, raises; behind `breaker` if given."""
        self._operation = operation
        self._client = client
        self._breaker = breaker

    def __enter__(self) -> None:
        """Refuse the call at once while the breaker is open (`_skipped`)."""
        breaker = self._breaker
        if breaker is not None and not breaker.allow():
            raise _skipped(self._operation, breaker)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Record the outcome; raise the translation of a foreign exception from it."""
        breaker = self._breaker
        if exc is None:
            if breaker is not None:
                breaker.record_success()
            return
        if isinstance(exc, AtomCacheError) or not isinstance(exc, Exception):
            if breaker is not None:
                breaker.release_probe()
            return  # already ours, or a cancellation
        refusal = _refusal_of(exc)
        kind: _ErrorKind = "refused credentials" if refusal is not None else _kind_of(exc)
        error_type, template = _ERRORS[kind]
        fields = {"operation": self._operation, "cause": _describe(exc)}
        if refusal is not None:
            said, by_sentinel = refusal
            fields.update(
                said=said,
                url=url_of(self._client),
                who="Redis Sentinel" if by_sentinel else "Redis",
                where=", or the Sentinels' own in sentinel_kwargs" if by_sentinel else "",
            )
        error = error_type(template.format(**fields))
        if breaker is not None:
            if kind == "no connection":  # the client's limit, not Redis being away
                breaker.release_probe()
            elif kind == "rejected":  # Redis answered
                breaker.record_success()
            else:  # kept while the breaker is open: a twin without the traceback
                breaker.record_failure(error_type(str(error)))
        raise error from exc


def _skipped(operation: str, breaker: CircuitBreaker) -> BackendUnavailableError:
    """The error of a call an open `breaker` refuses, of the kind of the last failure."""
    last = breaker.last_error
    if isinstance(last, BackendAuthenticationError):
        return BackendAuthenticationError(
            f"Redis {operation} skipped: the circuit is open after {breaker.failures} failures "
            f"in a row; the next try is in {breaker.retry_in:.1f} s. The last: {last}"
        )
    return BackendUnavailableError(
        f"Redis {operation} skipped: {breaker.failures} calls in a row could not reach Redis, "
        f"so the circuit is open; the next try is in {breaker.retry_in:.1f} s. Check that "
        "Redis is running and reachable"
    )


_ErrorKind: TypeAlias = Literal[
    "no connection", "refused credentials", "unreachable", "client fault", "rejected"
]
#: For each kind of failure, the exception raised and its message (`operation`, `cause`;
#: for credentials, `who` refused those of `url`, what it `said`, `where` else to look).
_ERRORS: dict[_ErrorKind, tuple[type[BackendError], str]] = {
    "no connection": (
        BackendUnavailableError,
        (
            "Redis {operation} skipped: every connection of the client's pool was in use (for "
            "the whole of its timeout, where it waits). Pass a larger max_connections or "
            "timeout to Cache.from_url (a cluster has one pool per node) or send fewer "
            "commands at once"
        ),
    ),
    "refused credentials": (
        BackendAuthenticationError,
        (
            "{who} rejected the credentials of {url}: check the password/username in the "
            "URL{where} (AUTH failed: {said})"
        ),
    ),
    "unreachable": (
        BackendUnavailableError,
        (
            "Redis {operation} failed: {cause}. Check that Redis is running and reachable at "
            "the configured URL; the next call reconnects by itself"
        ),
    ),
    "client fault": (
        BackendUnavailableError,
        (
            "Redis {operation} failed inside the client (redis-py): {cause}. This happens while "
            "connections are re-established (e.g. during a failover); the next call tries again"
        ),
    ),
    "rejected": (
        BackendError,
        (
            "Redis rejected {operation}: {cause}. If it names a permission (NOPERM), grant the "
            "user access to the namespace's keys and channels"
        ),
    ),
}


def _kind_of(exc: Exception) -> _ErrorKind:
    """What a redis-py or socket exception says about Redis, credentials aside."""
    if _pool_exhausted(exc):
        return "no connection"
    if isinstance(exc, (RedisConnectionError, RedisTimeoutError, OSError)):
        return "unreachable"
    # Anything else but a Redis error reply comes from inside redis-py, typically a
    # connection torn down by a concurrent reconnection during a failover.
    return "rejected" if isinstance(exc, RedisError) else "client fault"


def _refusal_of(exc: BaseException) -> tuple[str, bool] | None:
    """What a server said refusing the credentials, if `exc` is or comes of that.

    With whether it was a Sentinel. redis-py raises `AuthenticationError` for `WRONGPASS`,
    `NOAUTH` and an `AUTH` the server cannot take; a cluster client wraps it in a
    `RedisClusterException`, a Sentinel-managed one in `MasterNotFoundError`
    (`ExplainedSentinel`), each with the refusal as its `__cause__`.
    """
    by_sentinel = False
    cause: BaseException | None = exc
    while cause is not None:
        text = str(cause).rstrip(".")
        if isinstance(cause, (AuthenticationError, AuthenticationWrongNumberOfArgsError)) or (
            isinstance(cause, ResponseError) and text.startswith(("NOAUTH", "WRONGPASS"))
        ):
            return text, by_sentinel
        by_sentinel = by_sentinel or isinstance(cause, MasterNotFoundError)
        cause = cause.__cause__
    return None


def _pool_exhausted(exc: BaseException) -> bool:
    """Whether `exc` says no pooled connection was free, rather than Redis being away.

    redis-py raises `MaxConnectionsError` from a pool that does not wait (a cluster
    node's), and a `ConnectionError` raised from asyncio's `TimeoutError` when the wait
    of a `BlockingConnectionPool` (one server, and Sentinel here) runs out; its socket
    timeouts are `redis.exceptions.TimeoutError`s instead.
    """
    return isinstance(exc, MaxConnectionsError) or (
        isinstance(exc, RedisConnectionError) and isinstance(exc.__cause__, asyncio.TimeoutError)
    )


def node_breaker(
    cluster: RedisCluster | None, breaker: CircuitBreaker | None, key: str
) -> CircuitBreaker | None:
    """The breaker for a call on `key`: on a cluster, that of the node owning its slot."""
    if cluster is None or breaker is None:
        return breaker
    try:
        node = cluster.get_node_from_key(key)
    except (RedisError, RedisClusterException):  # the slot map is not loaded yet
        return breaker
    return breaker if node is None else breaker.for_node(node.name)


def _describe(exc: BaseException) -> str:
    """`Type: message` (redis-py's own repr drops the message), without a final period."""
    return f"{type(exc).__name__}: {str(exc).rstrip('.')}"
