"""How a `Cache` is put together: its backends, and the parts of each event loop.

`Cache` is the facade; `Assembly` is what it stands on: the backends it was given or
opened from a URL, the parts (`Parts`) it makes for each event loop that uses it, the
invalidations waiting for Redis, and the order in which all of it closes.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Generic, TypeAlias, TypeVar, overload

from atomcache_core._checks import checked_ttl
from atomcache_core._invalidations import PendingInvalidations, ReadsAfterInvalidation
from atomcache_core._loops import PerLoop
from atomcache_core._parts import Parts
from atomcache_core._refresh import RefreshAhead
from atomcache_core.backends._budget import DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES
from atomcache_core.backends.memory import MemoryLockBackend, MemoryNotifier, MemoryStorage
from atomcache_core.backends.tiered import TieredStorage
from atomcache_core.exceptions import ConfigurationError
from atomcache_core.keys import redacted

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Awaitable, Callable

    from redis.asyncio import Redis

    from atomcache_core._flight.coordinator import SingleFlight
    from atomcache_core._invalidations import Invalidation
    from atomcache_core._seconds import Seconds
    from atomcache_core.backends.redis import RedisClient
    from atomcache_core.breaker import CircuitBreaker
    from atomcache_core.protocols import LockBackend, Notifier, Storage

    #: The three backends of a cache.
    Backends: TypeAlias = tuple[Storage, LockBackend, Notifier]
    #: What `Cache.from_url` opens for each event loop: the backends, and their clients.
    Connection: TypeAlias = tuple[Backends, tuple[RedisClient, ...]]
    #: Opens new Redis clients: the main one, and the Sentinels' (`client_for`).
    Connector: TypeAlias = Callable[[], tuple[RedisClient, list[Redis]]]

__all__ = [
    "Assembly",
    "OfTheLoop",
    "checked_backends",
    "checked_local",
    "connected",
    "memory_storage",
    "redis_backends",
    "redis_connector",
    "scheme_of",
]

_REDIS_SCHEMES = ("redis", "rediss", "unix")
_CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
_SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
_URL_HELP = (
    "use memory://, redis://host:6379/0, rediss://host:6380/0 (TLS), "
    "unix:///path/to/redis.sock, redis+cluster://host1:7000,host2:7001 or "
    "redis+sentinel://host1:26379,host2:26379/service_name"
)

PartT = TypeVar("PartT")


class OfTheLoop(Generic[PartT]):
    """A `Cache` attribute that is the running event loop's (the `Parts` of that name).

    Outside any loop, that of the loop that used the cache last.
    """

    def __set_name__(self, owner: type[object], name: str) -> None:
        self._name = name

    @overload
    def __get__(self, cache: None, owner: type[object]) -> OfTheLoop[PartT]: ...

    @overload
    def __get__(self, cache: object, owner: type[object]) -> PartT: ...

    def __get__(self, cache: object | None, owner: type[object]) -> PartT | OfTheLoop[PartT]:
        if cache is None:
            return self
        assembly: Assembly = cache._assembly  # type: ignore[attr-defined]  # noqa: SLF001 - the cache's own
        part: PartT = getattr(assembly.here(), self._name)
        return part


class Assembly:
    """The backends of a cache, the parts of each event loop using it, and their closing.

    Args:
        backends: The storage, lock and notifier every event loop shares, unless
            `open_per_loop` gives each loop its own.
        local: The local tier's TTL, most entries and most bytes (`local_ttl`), if any.
        new_flight: Makes the single flight of one event loop's parts.
        announcements: The channel on which local tiers hear of writes.
        apply: Performs an invalidation on the shared storage (`PendingInvalidations`).
        probe: One read of the shared storage: whether Redis answers.
        invalidation_timeout: Seconds an invalidation may wait before it is kept.
    """

    def __init__(
        self,
        backends: Backends,
        *,
        local: tuple[float, int, int] | None,
        new_flight: Callable[[Parts], SingleFlight],
        announcements: str,
        apply: Callable[[Invalidation], Awaitable[int]],
        probe: Callable[[], Awaitable[object]],
        invalidation_timeout: float,
    ) -> None:
        """Make the parts of the first event loop (plain code may look at them before)."""
        self.invalidations = PendingInvalidations(
            apply, probe=probe, timeout=invalidation_timeout, blind=self.blind
        )
        self._local = local
        self._new_flight = new_flight
        self._announcements = announcements
        self.client: RedisClient | None = None
        self.closing: list[Any] = []
        #: The backends of every event loop, unless `_connect` makes each loop its own.
        self._backends = backends
        self._connect: Callable[[], Connection] | None = None
        #: The parts of the first event loop to use the cache (made now: plain code may
        #: look at them before), and that loop once it did.
        self.first = self._assemble(*backends)
        self._first_loop: asyncio.AbstractEventLoop | None = None
        self._closed = False  # by `close`, until the next use
        self.loops: PerLoop[Parts] = PerLoop(
            self._enter_loop, Parts.close, holds_connections=lambda parts: parts.own
        )

    def open_per_loop(
        self, connect: Connector, breaker: CircuitBreaker, clients: tuple[RedisClient, ...]
    ) -> None:
        """Give each event loop backends of its own from `connect`; the first, `clients`'.

        The Redis backends of every loop share `breaker`. The backends and clients of a
        loop close with it (`Parts.close`).
        """
        self._connect = functools.partial(connected, connect, breaker)
        self.first.own = True
        self.first.clients = clients

    def own_client(self, client: RedisClient) -> None:
        """Close `client` with the cache (`from_client(owns_client=True)`)."""
        self.client = client
        self.closing.append(client)

    @property
    def redis_client(self) -> RedisClient | None:
        """`Cache.redis_client`: the running loop's client, or the one given to close."""
        parts = self.loops.running()
        if parts is None:
            if self._closed:
                return None
            try:
                parts = self.loops.get()  # taken for this loop: `close` closes it
            except RuntimeError:  # no loop runs: the first loop's, once one takes them
                if self._first_loop is not None:
                    return None
                parts = self.first
        return parts.clients[0] if parts.clients else self.client

    def here(self) -> Parts:
        """The parts of the running event loop; outside any loop, the last loop's."""
        try:
            return self.loops.get()
        except RuntimeError:  # no loop runs: plain code looking at the cache
            return self.loops.latest or self.first

    async def close(self) -> None:
        """Stop background work and close the connections of every event loop.

        `Cache.close`: the running loop's work stops first, then the waiting
        invalidations are replayed, then each loop's parts close, then what every loop
        shares.
        """
        running = self.loops.running()
        if running is not None:
            await running.stop()  # no new work while the waiting invalidations are replayed
        await self.invalidations.close()
        await self.loops.close()  # first: a local tier stops listening before the notifier
        if self._connect is None:  # the backends every loop shares
            for backend in self._backends:
                await backend.close()
        self.client, self._closed = None, True
        for client in self.closing:  # again on a second close: a use after close reconnects
            await client.aclose()

    def blind(self, blind: bool) -> None:  # noqa: FBT001 - the callback of PendingInvalidations
        """Read the shared storage as if the waiting invalidations were applied, or not.

        In every event loop's parts; what their local tiers hold may be what the waiting
        invalidations remove, so it goes, each tier in its own loop.
        """
        for parts in self.loops.states():
            if blind:
                self._read_after_invalidations(parts)
            else:
                parts.read_through(parts.shared)
        if blind:
            self.loops.each(self._drop_skipped)

    def _read_after_invalidations(self, parts: Parts) -> None:
        """Have `parts` read the shared storage as if the waiting invalidations were applied."""
        parts.read_through(ReadsAfterInvalidation(parts.shared, self.invalidations))

    def _drop_skipped(self, parts: Parts) -> None:
        """Drop from `parts`' local tier what the waiting invalidations concern."""
        if parts.tier is not None:
            parts.tier.drop(self.invalidations.skipped_keys)

    def _enter_loop(self, loop: asyncio.AbstractEventLoop) -> Parts:
        """The parts of an event loop that has none yet (made by `PerLoop`, in `loop`).

        The first loop takes the parts made with the cache; every other gets new ones:
        backends of its own from `_connect` (`from_url`), else the same backends.

        Raises:
            ConfigurationError: the backends are Redis backends on a client the caller
                made, which belongs to the first loop, and `loop` is another.
        """
        self._closed = False
        if self._first_loop is None:
            self._first_loop = loop
            parts = self.first
        elif self._connect is not None:
            backends, clients = self._connect()
            parts = self._assemble(*backends)
            parts.own, parts.clients = True, clients
        else:
            self._check_shared(loop)
            parts = self._assemble(*self._backends)
        parts.loop = loop
        if len(self.invalidations):  # reads of what they concern find nothing
            self._read_after_invalidations(parts)
            self._drop_skipped(parts)
        self.invalidations.resume()
        return parts

    def _check_shared(self, loop: asyncio.AbstractEventLoop) -> None:
        """Refuse Redis backends on a client the caller made in a loop but the first.

        Raises:
            ConfigurationError: they are, and `loop` is not the first loop.
        """
        from atomcache_core.backends.redis import (  # noqa: PLC0415 - Redis only
            RedisLockBackend,
            RedisNotifier,
            RedisStorage,
        )

        redis = (RedisStorage, RedisLockBackend, RedisNotifier)
        if loop is not self._first_loop and any(isinstance(b, redis) for b in self._backends):
            msg = (
                "this cache's Redis backends use a redis-py client you made (Cache.from_client, "
                "or RedisStorage(client) ...), whose connections belong to the event loop "
                "that first used the cache; this call runs in another event loop (a second "
                "asyncio.run, or another thread). Make the client and the cache in each "
                "event loop, or use Cache.from_url(...), which opens connections for each "
                "event loop"
            )
            raise ConfigurationError(msg)

    def _assemble(self, storage: Storage, lock: LockBackend, notifier: Notifier) -> Parts:
        """The parts of one event loop on these backends: local tier, single flight."""
        tier = None
        if self._local is not None:
            local_ttl, max_entries, max_bytes = self._local
            tier = TieredStorage(
                storage,
                notifier,
                self._announcements,
                ttl=local_ttl,
                max_entries=max_entries,
                max_bytes=max_bytes,
            )
        parts = Parts(storage, lock, notifier, tier, RefreshAhead())
        parts.single_flight = self._new_flight(parts)
        return parts


def checked_backends(
    storage: Storage | None, lock: LockBackend | None, notifier: Notifier | None
) -> Backends:
    """The three backends of `Cache(...)`: the memory ones by default.

    Raises:
        ConfigurationError: a storage other than `MemoryStorage` comes without its lock
            or notifier.
    """
    if storage is None:
        storage = MemoryStorage()
    if isinstance(storage, MemoryStorage):
        lock = lock if lock is not None else MemoryLockBackend(storage)
        notifier = notifier if notifier is not None else MemoryNotifier()
    elif lock is None or notifier is None:
        msg = (
            f"{type(storage).__name__} needs its lock and notifier: pass lock= and "
            "notifier= for the same server (e.g. RedisLockBackend(client) and "
            "RedisNotifier(client)), or use Cache.from_url(...)"
        )
        raise ConfigurationError(msg)
    return storage, lock, notifier


def checked_local(
    storage: Storage, local_ttl: Seconds | None, max_entries: int, max_bytes: int
) -> tuple[float, int, int] | None:
    """The local tier's TTL, most entries and most bytes; `None` without `local_ttl`.

    Raises:
        ConfigurationError: `local_ttl` is given for a `MemoryStorage`, or is invalid.
    """
    if local_ttl is not None and isinstance(storage, MemoryStorage):
        msg = (
            "local_ttl adds an in-process tier in front of a shared storage, but "
            "MemoryStorage is already in process: drop local_ttl, or use Redis"
        )
        raise ConfigurationError(msg)
    if local_ttl is None:
        return None
    return (checked_ttl(local_ttl, "local_ttl"), max_entries, max_bytes)


def memory_storage(
    max_entries: int | None,
    max_bytes: int | None,
    breaker: CircuitBreaker | None,
    redis_options: dict[str, Any],
) -> MemoryStorage:
    """The storage of `memory://`, bounded by `max_entries` and `max_bytes`.

    Raises:
        ConfigurationError: Redis options (`redis_options`, `breaker`) are given.
    """
    if redis_options or breaker is not None:
        extra = ", ".join(sorted([*redis_options, *(["breaker"] if breaker else [])]))
        msg = f"memory:// takes no Redis options, got {extra}: drop them, or use redis://"
        raise ConfigurationError(msg)
    return MemoryStorage(
        DEFAULT_MAX_ENTRIES if max_entries is None else max_entries,
        DEFAULT_MAX_BYTES if max_bytes is None else max_bytes,
    )


def scheme_of(url: str) -> str:
    """The scheme of a cache URL, in lower case; `""` if it has none."""
    return url.partition("://")[0].lower() if "://" in url else ""


def redis_connector(
    url: str,
    max_entries: int | None,
    max_bytes: int | None,
    redis_options: dict[str, Any],
) -> Connector:
    """What opens the clients of a Redis URL, with 2 s timeouts unless `redis_options` differ.

    Raises:
        ConfigurationError: `max_entries` or `max_bytes` is given, or the URL's scheme
            is not one of Redis.
    """
    if max_entries is not None or max_bytes is not None:
        msg = (
            "max_entries and max_bytes bound the in-memory storage of memory://; the "
            "local tier in front of Redis has local_max_entries and local_max_bytes"
        )
        raise ConfigurationError(msg)
    if scheme_of(url) not in (*_REDIS_SCHEMES, *_CLUSTER_SCHEMES, *_SENTINEL_SCHEMES):
        msg = f"unsupported cache URL {redacted(url)!r}: {_URL_HELP}"
        raise ConfigurationError(msg)
    from atomcache_core.backends.redis import urls as _redis_urls  # noqa: PLC0415 - Redis URLs only

    options: dict[str, Any] = {"socket_connect_timeout": 2.0, "socket_timeout": 2.0}
    options.update(redis_options)
    return functools.partial(_redis_urls.client_for, url, options)


def redis_backends(client: RedisClient, breaker: CircuitBreaker) -> Backends:
    """The three Redis backends on `client`, behind one `breaker`."""
    from atomcache_core.backends.redis import (  # noqa: PLC0415 - Redis only
        RedisLockBackend,
        RedisNotifier,
        RedisStorage,
    )

    return (
        RedisStorage(client, breaker=breaker),
        RedisLockBackend(client, breaker=breaker),
        RedisNotifier(client, breaker=breaker),
    )


def connected(connect: Connector, breaker: CircuitBreaker) -> Connection:
    """New clients from `connect` (`client_for`), and the Redis backends on them."""
    client, sentinels = connect()
    return redis_backends(client, breaker), (client, *sentinels)
