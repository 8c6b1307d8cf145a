"""The `Cache` facade: the one object applications hold.

Longer than the core's other modules because it is the public facade: some 25
documented methods and properties (the data API, `get_or_set` with its typed overloads,
`cached`, the constructors), each a few lines over the parts it delegates to. How the
cache is put together and closed is in `_assembly`, the checks of its arguments in
`_checks`, the invalidations in `_invalidations`, single flight in `_flight`.
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any, overload

from atomcache_core._assembly import (
    Assembly,
    OfTheLoop,
    checked_backends,
    checked_local,
    memory_storage,
    redis_backends,
    redis_connector,
    scheme_of,
)
from atomcache_core._checks import checked_names, checked_policy, checked_ttl, flight_options
from atomcache_core._decorator import cached_function
from atomcache_core._flight.context import FlightContext
from atomcache_core._flight.coordinator import SingleFlight
from atomcache_core._invalidations import Invalidation, apply_invalidation
from atomcache_core._telemetry import Telemetry
from atomcache_core.backends._budget import DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES
from atomcache_core.breaker import CircuitBreaker
from atomcache_core.entry import Entry, decode_entry, encode_entry
from atomcache_core.exceptions import ConfigurationError
from atomcache_core.keys import KeyBuilder
from atomcache_core.observability import Observer, default_observer, observer_of
from atomcache_core.serializers import JsonSerializer

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
    from types import TracebackType

    from typing_extensions import Self

    from atomcache_core._decorator import CachingDecorator, ResultT
    from atomcache_core._flight.options import Uncacheable, WaitTimeoutPolicy
    from atomcache_core._refresh import RefreshAhead
    from atomcache_core._seconds import Seconds
    from atomcache_core.backends.redis import RedisClient
    from atomcache_core.protocols import LockBackend, Notifier, Serializer, Storage
    from atomcache_core.stats import CacheStats

__all__ = ["DEFAULT_NAMESPACE", "DEFAULT_TTL", "Cache"]

DEFAULT_NAMESPACE = "default"
#: How many other versions' key builders `keys_of` keeps made.
_VERSIONS_KEPT = 64
DEFAULT_TTL = 300.0
DEFAULT_LOCK_TTL = 10.0
DEFAULT_RECHECK_INTERVAL = 2.0
DEFAULT_WAIT_TIMEOUT = 30.0
DEFAULT_INVALIDATION_TIMEOUT = 1.0
_MISSING: Any = object()
#: The arguments of `Cache.from_url` that it passes on to `Cache`.
_SETTINGS = frozenset(
    (
        "serializer", "namespace", "version", "ttl", "lock_ttl", "recheck_interval",
        "wait_timeout", "on_wait_timeout", "local_ttl", "local_max_entries", "local_max_bytes",
        "observers", "invalidation_timeout",
    )
)  # fmt: skip


class Cache:
    """An async cache over pluggable backends, in-memory by default.

    Args:
        storage: Where entries live. Default: a bounded `MemoryStorage`.
        lock: Single-flight locks. Default: `MemoryLockBackend`.
        notifier: Wake-ups for waiters. Default: `MemoryNotifier`.
        serializer: Values to bytes. Default: `JsonSerializer`.
        namespace: Keeps this cache's keys apart from other caches on the same storage.
        version: The key version of every data method's default (impcache's and
            Django's `version`): another version is another key, so raising it after a
            deploy that changes what values look like retires every older entry. Each
            method also takes `version=`. Positive integers; 1 keeps the keys of a
            cache without versions.
        ttl: Default time to live in seconds for `set` and `get_or_set`.
        lock_ttl: Expiry of a single-flight lock; the leader extends it while computing,
            so it bounds how long a crashed leader blocks the key, not the computation.
        recheck_interval: A waiter that hears nothing (no "stored", "failed" or
            "computing" event) for this long re-reads the key and retries the lock.
        wait_timeout: The longest a caller waits for another process's computation.
        on_wait_timeout: After `wait_timeout`: `"compute"` the value here without
            storing it (default), or `"raise"` `LockTimeoutError`.
        local_ttl: Turns on the local tier (`TieredStorage`): fresh entries read from the
            shared storage are also kept in process memory for at most this many
            seconds, and hits on them never leave the process. Writes in any instance
            evict the key from every instance's local tier through `notifier`.
            `None` (default): no local tier.
        local_max_entries: The most entries the local tier holds (least recently used
            evicted first; default 10,000).
        local_max_bytes: The most bytes the local tier holds (default 64 MiB, counted
            as `MemoryStorage` counts them: key, value and `ENTRY_OVERHEAD` per entry).
        observers: Where the cache's metrics and spans go (`atomcache_core.observability`):
            `None` (default): OpenTelemetry and Prometheus, each if its library is
            installed; `()`: nowhere.
        invalidation_timeout: Seconds an invalidation (`delete`, `delete_many`,
            `delete_pattern`, `clear`, `invalidate_tags`) may wait for Redis before it is
            kept and replayed when Redis answers again (default 1 s; docs/reliability.md).

    `storage`, `lock` and `notifier` go together: give all three (e.g. the Redis
    backends on one client), or only a `MemoryStorage`, or none.

    A cache serves every event loop that uses it, one after another or at once (in
    threads): the attributes `storage`, `shared_storage`, `lock`, `notifier`,
    `single_flight` and `refresher` are those of the running loop, which has its own
    (docs/core.md, "Event loops and threads").

    Raises:
        ConfigurationError: an argument is invalid.
    """

    storage: OfTheLoop[Storage] = OfTheLoop()
    """What the cache reads and writes through: the local tier (`local_ttl`), else the
    shared storage as reads see it (`shared_storage`)."""
    shared_storage: OfTheLoop[Storage] = OfTheLoop()
    """The storage every instance shares, as this cache reads it: while invalidations
    wait for Redis (`pending_invalidations`), reads of what they concern find nothing."""
    lock: OfTheLoop[LockBackend] = OfTheLoop()
    """The single-flight locks."""
    notifier: OfTheLoop[Notifier] = OfTheLoop()
    """The single-flight notifications, and the local tiers' announcements."""
    single_flight: OfTheLoop[SingleFlight] = OfTheLoop()
    """The coordination of `get_or_set`."""
    refresher: OfTheLoop[RefreshAhead] = OfTheLoop()
    """The refresh-ahead loops (stopped by `close`)."""

    def __init__(
        self,
        *,
        storage: Storage | None = None,
        lock: LockBackend | None = None,
        notifier: Notifier | None = None,
        serializer: Serializer | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        version: int = 1,
        ttl: Seconds = DEFAULT_TTL,
        lock_ttl: float = DEFAULT_LOCK_TTL,
        recheck_interval: float = DEFAULT_RECHECK_INTERVAL,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
        on_wait_timeout: WaitTimeoutPolicy = "compute",
        local_ttl: Seconds | None = None,
        local_max_entries: int = DEFAULT_MAX_ENTRIES,
        local_max_bytes: int = DEFAULT_MAX_BYTES,
        observers: Iterable[Observer] | None = None,
        invalidation_timeout: float = DEFAULT_INVALIDATION_TIMEOUT,
    ) -> None:
        """Assemble a cache from its parts."""
        storage, lock, notifier = checked_backends(storage, lock, notifier)
        checked_policy(on_wait_timeout)
        keys = KeyBuilder(namespace, version)
        self._versions: dict[int, KeyBuilder] = {}
        timeout = checked_ttl(invalidation_timeout, "invalidation_timeout")
        local = checked_local(storage, local_ttl, local_max_entries, local_max_bytes)
        self.default_ttl = checked_ttl(ttl)
        observer = default_observer() if observers is None else observer_of(observers)
        #: What single flight reads of this cache (keys, serializer, telemetry).
        self._context = FlightContext(
            keys,
            serializer if serializer is not None else JsonSerializer(),
            Telemetry(namespace, observer),
        )
        new_flight = functools.partial(
            SingleFlight,
            self._context,
            lock_ttl=checked_ttl(lock_ttl, "lock_ttl"),
            recheck_interval=checked_ttl(recheck_interval, "recheck_interval"),
            wait_timeout=checked_ttl(wait_timeout, "wait_timeout"),
            on_wait_timeout=on_wait_timeout,
        )
        #: The parts of each event loop, the waiting invalidations, the closing.
        self._assembly = Assembly(
            (storage, lock, notifier),
            local=local,
            new_flight=new_flight,
            announcements=keys.invalidations,
            apply=self._apply,
            probe=self.check,  # does Redis answer at all?
            invalidation_timeout=timeout,
        )
        self._invalidations = self._assembly.invalidations
        self._loops = self._assembly.loops

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        version: int = 1,
        ttl: Seconds = DEFAULT_TTL,
        serializer: Serializer | None = None,
        max_entries: int | None = None,
        max_bytes: int | None = None,
        breaker: CircuitBreaker | None = None,
        lock_ttl: float = DEFAULT_LOCK_TTL,
        recheck_interval: float = DEFAULT_RECHECK_INTERVAL,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
        on_wait_timeout: WaitTimeoutPolicy = "compute",
        local_ttl: Seconds | None = None,
        local_max_entries: int = DEFAULT_MAX_ENTRIES,
        local_max_bytes: int = DEFAULT_MAX_BYTES,
        observers: Iterable[Observer] | None = None,
        invalidation_timeout: float = DEFAULT_INVALIDATION_TIMEOUT,
        **redis_options: Any,
    ) -> Cache:
        """Create a cache from a URL.

        * `memory://`: the embedded in-memory backends, bounded by `max_entries`
          (default 10,000) and `max_bytes` (default 64 MiB; see `MemoryStorage`).
        * `redis://`, `rediss://` (TLS) and `unix://`: one Redis server. The client's
          pool holds at most `max_connections` (default 100) connections and a call
          waits up to `timeout` (default 2 s) for a free one instead of failing at
          once; `redis_options` go to `redis.asyncio.BlockingConnectionPool.from_url`
          (e.g. `socket_timeout`, default 2 s).
        * `redis+cluster://host1:port1,host2:port2` (`rediss+cluster://` for TLS): a
          Redis Cluster (or Valkey cluster) found from these startup nodes;
          `redis_options` go to `redis.asyncio.RedisCluster`.
        * `redis+sentinel://host1:26379,host2:26379/service_name[/db]`
          (`rediss+sentinel://`: TLS to the master): the master that these Sentinels
          monitor under `service_name`, found again after a failover; `redis_options`
          go to the master's client.

        A user and password in the URL (`redis+cluster://user:secret@host:port`) are
        used for the servers. Every Redis connection has 2 s connect and socket
        timeouts unless `redis_options` says otherwise. The Redis backends share one
        `breaker` (default `CircuitBreaker()`: open after 5 consecutive failures to
        reach Redis, probe again after 5 s). The other arguments are those of `Cache`.

        Raises:
            ConfigurationError: the URL's scheme is not one of these, or it is malformed;
                a keyword argument is one redis-py does not take (a typo: the message
                names the closest option), is a Redis option given to `memory://`, or is
                `max_entries`/`max_bytes` given to a Redis URL (the local tier's are
                `local_max_entries`/`local_max_bytes`).
        """
        settings = {name: value for name, value in locals().items() if name in _SETTINGS}
        if scheme_of(url) == "memory":
            storage = memory_storage(max_entries, max_bytes, breaker, redis_options)
            return cls(storage=storage, **settings)
        connect = redis_connector(url, max_entries, max_bytes, redis_options)
        client, sentinels = connect()  # the URL and the options are checked now
        breaker = breaker if breaker is not None else CircuitBreaker()
        cache = cls.from_client(client, breaker=breaker, **settings)
        cache._assembly.open_per_loop(connect, breaker, (client, *sentinels))  # noqa: SLF001
        return cache

    @classmethod
    def from_client(
        cls,
        client: RedisClient,
        *,
        owns_client: bool = False,
        breaker: CircuitBreaker | None = None,
        **settings: Any,
    ) -> Cache:
        """Create a cache on a redis-py asyncio client you made: `Redis` or `RedisCluster`.

        The three Redis backends share `client` and `breaker` (default
        `CircuitBreaker()`); `settings` are the keyword arguments of `Cache`. The client
        must return bytes (`decode_responses=False`, the default). `close()` closes it
        only if `owns_client`.
        """
        breaker = breaker if breaker is not None else CircuitBreaker()
        storage, lock, notifier = redis_backends(client, breaker)
        cache = cls(storage=storage, lock=lock, notifier=notifier, **settings)
        if cache.observer is not None:
            breaker.on_change = cache.telemetry.breaker
        if owns_client:
            cache._assembly.own_client(client)
        return cache

    @property
    def observer(self) -> Observer | None:
        """Receives the cache's events for metrics and spans; `None`: nothing reports.

        Settable: `cache.observer = None` stops reporting (the counters go on).
        """
        return self.telemetry.observer

    @observer.setter
    def observer(self, observer: Observer | None) -> None:
        self.telemetry.observer = observer

    @property
    def redis_client(self) -> RedisClient | None:
        """The redis-py client the cache made or was given to close; `None` once closed.

        `from_url` makes one for each event loop: this is the running loop's once the
        cache was used in it (before any use, the one the first loop takes), and
        `None` after `close` until the next use. `from_client(owns_client=True)`'s is
        the client it was given, until `close`.
        """
        return self._assembly.redis_client

    @property
    def namespace(self) -> str:
        """The namespace this cache's keys live in."""
        return self.keys.namespace

    @property
    def stats(self) -> CacheStats:
        """Live counters of hits, misses, computations and errors."""
        return self.telemetry.stats

    async def check(self) -> None:
        """Raise now if the storage cannot be used, rather than failing open at each call.

        One read of a key no entry uses, from the shared storage (not the local tier): on
        Redis it connects (through the Sentinels, or to the cluster's nodes), logs in with
        the URL's credentials and sends a `GET` the namespace's ACL rules must allow. The
        adapters run it at startup with `check=True`; call it in your own startup or a
        readiness probe. In memory it always passes.

        Raises:
            BackendAuthenticationError: Redis (or a Sentinel) refused the credentials;
                the message names the URL, password redacted, and the server's words.
            BackendUnavailableError: Redis could not be reached in time (or the circuit
                breaker is open after such failures).
            BackendError: Redis answered with an error (e.g. an ACL denial, NOPERM).
        """
        await self._loops.get().shared.get(self.keys.value(""))

    async def get(self, key: str, default: Any = None, *, version: int | None = None) -> Any:
        """Return the fresh value stored under `key` (of `version`), or `default`."""
        data = await self._loops.get().storage.get(self.keys_of(version).value(key))
        return self._read(data, time.time(), default)

    async def set(
        self,
        key: str,
        value: Any,
        ttl: Seconds | None = None,
        tags: Iterable[str] = (),
        *,
        version: int | None = None,
    ) -> None:
        """Store `value` under `key` for `ttl` seconds (default: the cache's TTL).

        Raises:
            SerializationError: `value` cannot be serialized; nothing was written.
        """
        await self.storage.set(*self._write(key, value, ttl, tags, version))

    async def add(
        self,
        key: str,
        value: Any,
        ttl: Seconds | None = None,
        tags: Iterable[str] = (),
        *,
        version: int | None = None,
    ) -> bool:
        """Store `value` under `key` only if nothing is stored there; return whether it was.

        One atomic step (`SET NX` on Redis): of concurrent `add`s of an absent key, in
        any number of processes, exactly one returns `True` ("first writer wins", as
        aiocache's `add` and impcache's `set_nx`). "Stored" means present in storage:
        a value written by `set` or `add` is there until its `ttl` ends; one written by
        `get_or_set` with `stale_ttl` or `stale_if_error` stays for those windows too.

        Raises:
            SerializationError: `value` cannot be serialized; nothing was written.
        """
        return await self.storage.add(*self._write(key, value, ttl, tags, version))

    def _write(
        self,
        key: str,
        value: Any,
        ttl: Seconds | None,
        tags: Iterable[str],
        version: int | None,
    ) -> tuple[str, bytes, float, tuple[str, ...]]:
        """What `set` and `add` give storage: value key, entry bytes, seconds, tag keys."""
        keys = self.keys_of(version)
        seconds = self._ttl(ttl)
        tag_keys = keys.tags(checked_names(tags, "tags"), key)
        return keys.value(key), self._encode(value, seconds, time.time()), seconds, tag_keys

    async def delete(self, key: str, *, version: int | None = None, strict: bool = False) -> bool:
        """Remove `key`; return whether it was stored.

        A computation of `key` under way (in any instance) stores nothing: its callers
        get its result, and the next caller computes again. If Redis does not take the
        deletion within `invalidation_timeout`, it is kept and replayed when Redis
        answers again, and `False` is returned; with `strict`, the error is raised
        instead (docs/reliability.md).

        Raises:
            BackendUnavailableError: with `strict`, Redis is away or did not answer in time.
        """
        keys = self.keys_of(version)
        invalidation = Invalidation("keys", (key,), version, frozenset((keys.value(key),)))
        return await self._invalidations.run(invalidation, strict=strict) > 0

    async def exists(self, key: str, *, version: int | None = None) -> bool:
        """Whether a fresh value is stored under `key`."""
        entry = await self._entry(key, version)
        return entry is not None and entry.is_fresh(time.time())

    async def ttl(self, key: str, *, version: int | None = None) -> float | None:
        """Seconds until `key` expires, or `None` when it holds no fresh value."""
        entry = await self._entry(key, version)
        now = time.time()
        if entry is None or not entry.is_fresh(now):
            return None
        return entry.fresh_until - now

    async def get_many(
        self, keys: Sequence[str], default: Any = None, *, version: int | None = None
    ) -> list[Any]:
        """Return the value of each key, in order, `default` for each missing one."""
        builder = self.keys_of(version)
        datas = await self.storage.get_many([builder.value(key) for key in keys])
        now = time.time()
        return [self._read(data, now, default) for data in datas]

    async def set_many(
        self, mapping: Mapping[str, Any], ttl: Seconds | None = None, *, version: int | None = None
    ) -> None:
        """Store every key and value of `mapping` for `ttl` seconds.

        Raises:
            SerializationError: a value cannot be serialized; nothing was written.
        """
        builder = self.keys_of(version)
        seconds = self._ttl(ttl)
        now = time.time()
        items = {
            builder.value(key): self._encode(value, seconds, now) for key, value in mapping.items()
        }
        await self.storage.set_many(items, seconds)

    async def delete_many(
        self, keys: Sequence[str], *, version: int | None = None, strict: bool = False
    ) -> int:
        """Remove every key; return how many were stored (as `delete`: 0 when kept)."""
        builder = self.keys_of(version)
        value_keys = frozenset(builder.value(key) for key in keys)
        invalidation = Invalidation("keys", tuple(keys), version, value_keys)
        return await self._invalidations.run(invalidation, strict=strict)

    async def delete_pattern(
        self, pattern: str, *, version: int | None = None, strict: bool = False
    ) -> int:
        """Remove every entry whose key matches `pattern`; return how many.

        `pattern` is a Redis glob over the keys given to `set` (impcache's
        `delete_pattern`): `*`, `?`, `[abc]`, `[^a]`, `[a-z]`, a backslash taking the
        next character literally. Only this namespace's entries of `version` (default:
        the cache's) are looked at, however the namespace is spelled: it is matched
        literally. On Redis the keys are found with `SCAN` (every master of a
        cluster), never `KEYS`. Keys longer than 200 UTF-8 bytes are stored under
        their SHA-256 and are never matched: give such entries a tag instead.
        Computations of matching keys under way, and Redis being away, are as for
        `delete`.

        Raises:
            ConfigurationError: `pattern` is not a string.
            BackendUnavailableError: with `strict`, Redis is away or did not answer in time.
        """
        if not isinstance(pattern, str):
            msg = f"pattern must be a str glob such as 'user:*', got {pattern!r}"  # type: ignore[unreachable]
            raise ConfigurationError(msg)
        self.keys_of(version)  # checked now, not when replayed
        invalidation = Invalidation("pattern", (pattern,), version)
        return await self._invalidations.run(invalidation, strict=strict)

    async def clear(self, *, version: int | None = None, strict: bool = False) -> int:
        """Remove every entry and tag of this namespace, and no other; return the entries.

        Entries of every version go (aiocache's `clear` of a namespace); with `version=`,
        only that version's. Computations under way, and Redis being away, are as for
        `delete`.

        Raises:
            BackendUnavailableError: with `strict`, Redis is away or did not answer in time.
        """
        if version is not None:
            self.keys_of(version)
        return await self._invalidations.run(Invalidation("clear", (), version), strict=strict)

    async def invalidate_tags(
        self, *tags: str, version: int | None = None, strict: bool = False
    ) -> int:
        """Remove every entry stored with any of `tags`; return how many.

        Computations under way that store with one of `tags`, and Redis being away, are
        as for `delete`.

        Raises:
            BackendUnavailableError: with `strict`, Redis is away or did not answer in time.
        """
        self.keys_of(version)
        invalidation = Invalidation("tags", checked_names(tags, "tags"), version)
        return await self._invalidations.run(invalidation, strict=strict)

    @property
    def pending_invalidations(self) -> int:
        """How many invalidations wait for Redis to answer again, to be replayed."""
        return len(self._invalidations)

    async def _apply(self, invalidation: Invalidation) -> int:
        """Perform an invalidation on the storage; how many entries it removed.

        Locks first: a computation that writes between the two is refused, one that
        wrote before has its value removed.
        """
        return await apply_invalidation(
            invalidation, self._assembly.here, self.keys_of, self.namespace
        )

    def keys_of(self, version: int | None) -> KeyBuilder:
        """The storage keys of `version` (`None`: the cache's own, `Cache(version=...)`).

        Raises:
            ConfigurationError: `version` is not a positive integer.
        """
        if version is None or version == self.keys.version:
            return self.keys
        found = self._versions.get(version)
        if found is None:
            found = KeyBuilder(self.namespace, version)
            if len(self._versions) >= _VERSIONS_KEPT:
                self._versions.clear()
            self._versions[version] = found
        return found

    @overload
    async def get_or_set(
        self,
        key: str,
        factory: Callable[[], Awaitable[Uncacheable[ResultT]]],
        ttl: Seconds | None = None,
        tags: Iterable[str] = (),
        *,
        stale_ttl: Seconds = 0.0,
        stale_if_error: Seconds = 0.0,
        beta: float = 0.0,
        refresh_ahead: bool = False,
        refresh_idle: float | None = None,
        version: int | None = None,
    ) -> ResultT: ...

    @overload
    async def get_or_set(
        self,
        key: str,
        factory: Callable[[], Awaitable[ResultT | Uncacheable[ResultT]]],
        ttl: Seconds | None = None,
        tags: Iterable[str] = (),
        *,
        stale_ttl: Seconds = 0.0,
        stale_if_error: Seconds = 0.0,
        beta: float = 0.0,
        refresh_ahead: bool = False,
        refresh_idle: float | None = None,
        version: int | None = None,
    ) -> ResultT: ...

    @overload
    async def get_or_set(
        self,
        key: str,
        factory: Callable[[], Uncacheable[ResultT]],
        ttl: Seconds | None = None,
        tags: Iterable[str] = (),
        *,
        stale_ttl: Seconds = 0.0,
        stale_if_error: Seconds = 0.0,
        beta: float = 0.0,
        refresh_ahead: bool = False,
        refresh_idle: float | None = None,
        version: int | None = None,
    ) -> ResultT: ...

    @overload
    async def get_or_set(
        self,
        key: str,
        factory: Callable[[], ResultT | Uncacheable[ResultT]],
        ttl: Seconds | None = None,
        tags: Iterable[str] = (),
        *,
        stale_ttl: Seconds = 0.0,
        stale_if_error: Seconds = 0.0,
        beta: float = 0.0,
        refresh_ahead: bool = False,
        refresh_idle: float | None = None,
        version: int | None = None,
    ) -> ResultT: ...

    async def get_or_set(
        self,
        key: str,
        factory: Callable[[], Any],
        ttl: Seconds | None = None,
        tags: Iterable[str] = (),
        *,
        stale_ttl: Seconds = 0.0,
        stale_if_error: Seconds = 0.0,
        beta: float = 0.0,
        refresh_ahead: bool = False,
        refresh_idle: float | None = None,
        version: int | None = None,
    ) -> Any:
        """Return the value of `key`, calling `factory` once fleet-wide when it is missing.

        Args:
            key: The cache key.
            factory: A zero-argument callable returning the value or an awaitable of it,
                called in the event loop; for blocking work, pass
                `lambda: asyncio.to_thread(load)`.
            ttl: Seconds the computed value stays fresh (default: the cache's TTL).
            tags: Tags to store the value with, for `invalidate_tags`.
            stale_ttl: Stale-while-revalidate window (RFC 5861): for this many seconds
                after expiry the old value is returned at once while one background
                refresh runs fleet-wide.
            stale_if_error: For this many seconds after expiry, a failing recomputation
                returns the old value instead of raising.
            beta: Early refresh (XFetch): when > 0, a read of a fresh value may start
                a background refresh shortly before expiry, more likely the closer the
                expiry and the slower the factory; 1.0 is the usual choice.
            refresh_ahead: Keep the entry warm while it is read: shortly before it
                expires (a tenth of `ttl`, 1 s to half of it, or 1.5 times the
                computation if longer) one instance of the
                fleet recomputes it (its lock), readers getting the stored value
                meanwhile (HTTP.md 7.4; docs/single-flight.md).
            refresh_idle: With `refresh_ahead`, the seconds without a read (in this
                process) after which the entry is left to expire; default 5 times
                `ttl`.
            version: The key version (default: the cache's, `Cache(version=...)`);
                another version is another entry, with its own single flight.

        Returns:
            What a hit returns, to every caller (the one that computed included): the
            value as the serializer reads it back, an object of the caller's own.

        Raises:
            LockTimeoutError: the wait for another process exceeded `wait_timeout`
                and the cache was created with `on_wait_timeout="raise"`.
            SerializationError: the value cannot be serialized; it is returned to
                nobody and not stored.
        """
        options = flight_options(
            self._ttl(ttl),
            tags,
            stale_ttl=stale_ttl,
            stale_if_error=stale_if_error,
            beta=beta,
            refresh_ahead=refresh_ahead,
            refresh_idle=refresh_idle,
            keys=None if version is None else self.keys_of,
            version=version,
        )
        return (await self._loops.get().single_flight.get_or_set(key, factory, options)).value

    def cached(
        self,
        ttl: Seconds | None = None,
        *,
        key: Callable[..., str] | None = None,
        exclude: Iterable[str] = (),
        tags: Iterable[str] = (),
        stale_ttl: Seconds = 0.0,
        stale_if_error: Seconds = 0.0,
        beta: float = 0.0,
        refresh_ahead: bool = False,
        refresh_idle: float | None = None,
        version: int | None = None,
    ) -> CachingDecorator:
        """Decorate a function so its results are cached with `get_or_set`.

        An `async def` runs in the event loop; a plain `def` is taken as blocking and
        runs in a worker thread. Either way the decorated function is a coroutine
        function with the same parameters (`CachingDecorator`).

        The key is the function's module and qualified name plus its arguments (bound
        to the signature, defaults applied, JSON-encoded with sorted names), so
        `f(1)` and `f(x=1)` share an entry. Leave arguments out of the key with
        `exclude=("session",)` (e.g. a database session), or build it yourself with
        `key=lambda *args, **kwargs: "..."`. The other arguments are `get_or_set`'s.
        """
        return cached_function(
            self.get_or_set,
            ttl=ttl,
            key=key,
            exclude=checked_names(exclude, "exclude"),
            tags=checked_names(tags, "tags"),
            stale_ttl=stale_ttl,
            stale_if_error=stale_if_error,
            beta=beta,
            refresh_ahead=refresh_ahead,
            refresh_idle=refresh_idle,
            version=version,
        )

    async def close(self) -> None:
        """Stop background work and close the connections this cache opened.

        Those of every event loop that used it: the running loop's here, a loop running
        in another thread's in that loop (docs/core.md, "Event loops and threads").
        """
        await self._assembly.close()

    async def __aenter__(self) -> Self:
        """Use the cache in `async with`; it is closed on exit."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the cache."""
        await self.close()

    def __repr__(self) -> str:
        """Show the namespace and backends."""
        return (
            f"Cache(namespace={self.namespace!r}, storage={type(self.storage).__name__}, "
            f"ttl={self.default_ttl})"
        )

    def decode(
        self, data: bytes | None, serializer: Serializer | None = None
    ) -> tuple[Entry, Any] | None:
        """Decode stored bytes into the entry and its value; `None` if absent or corrupt.

        Corrupt bytes (not an entry of this format version, or a payload the serializer
        rejects) are counted in `stats.corrupt`.
        """
        return self._context.decode(data, serializer)

    @property
    def keys(self) -> KeyBuilder:
        """The storage keys of this cache's namespace and version."""
        return self._context.keys

    @property
    def serializer(self) -> Serializer:
        """Encodes and decodes values (`JsonSerializer` unless given)."""
        return self._context.serializer

    @property
    def telemetry(self) -> Telemetry:
        """Counts every event, and reports it to the observer (`observer`), if any."""
        return self._context.telemetry

    async def _entry(self, key: str, version: int | None = None) -> Entry | None:
        data = await self.storage.get(self.keys_of(version).value(key))
        return decode_entry(data) if data is not None else None

    def _read(self, data: bytes | None, now: float, default: Any) -> Any:
        """Turn stored bytes into the fresh value, or `default`, counting the outcome."""
        value = self._decode(data, now)
        if value is _MISSING:
            self.telemetry.miss()
            return default
        self.telemetry.hit()
        return value

    def _decode(self, data: bytes | None, now: float) -> Any:
        found = self.decode(data)
        if found is None or not found[0].is_fresh(now):
            return _MISSING
        return found[1]

    def _encode(self, value: Any, ttl: float, now: float) -> bytes:
        payload = self.serializer.dumps(value)
        return encode_entry(Entry(payload, now, now + ttl, now + ttl))

    def _ttl(self, ttl: Seconds | None) -> float:
        return self.default_ttl if ttl is None else checked_ttl(ttl)
