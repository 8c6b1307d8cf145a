"""The `Cache` facade: the one object applications hold."""

from __future__ import annotations

import asyncio
import functools
import time
from typing import TYPE_CHECKING, Any, Generic, TypeAlias, TypeVar, overload

from atomcache_core._decorator import cached_function, excluded_names
from atomcache_core._flight.context import FlightContext
from atomcache_core._flight.coordinator import SingleFlight
from atomcache_core._flight.options import FlightOptions, WaitTimeoutPolicy
from atomcache_core._invalidations import (
    TAGS_AT_ONCE,
    Invalidation,
    PendingInvalidations,
    ReadsAfterInvalidation,
)
from atomcache_core._loops import PerLoop
from atomcache_core._parts import Parts
from atomcache_core._refresh import RefreshAhead
from atomcache_core._seconds import Seconds, checked_seconds
from atomcache_core._telemetry import Telemetry
from atomcache_core.backends._budget import DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES
from atomcache_core.backends.memory import MemoryLockBackend, MemoryNotifier, MemoryStorage
from atomcache_core.backends.tiered import TieredStorage
from atomcache_core.breaker import CircuitBreaker
from atomcache_core.entry import Entry, decode_entry, encode_entry
from atomcache_core.exceptions import ConfigurationError
from atomcache_core.keys import KeyBuilder, escape_glob, redacted
from atomcache_core.observability import Observer, default_observer, observer_of
from atomcache_core.serializers import JsonSerializer

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
    from types import TracebackType

    from redis.asyncio import Redis
    from typing_extensions import Self

    from atomcache_core._decorator import CachingDecorator, ResultT
    from atomcache_core._flight.options import Uncacheable
    from atomcache_core.backends.redis import RedisClient
    from atomcache_core.protocols import LockBackend, Notifier, Serializer, Storage
    from atomcache_core.stats import CacheStats

    #: What `Cache.from_url` opens for each event loop: the backends, and their clients.
    _Connection: TypeAlias = tuple[tuple[Storage, LockBackend, Notifier], tuple[RedisClient, ...]]

__all__ = ["DEFAULT_NAMESPACE", "DEFAULT_TTL", "Cache"]

DEFAULT_NAMESPACE = "default"
#: How many other versions' key builders `keys_of` keeps made.
_VERSIONS_KEPT = 64
DEFAULT_TTL = 300.0
DEFAULT_LOCK_TTL = 10.0
DEFAULT_RECHECK_INTERVAL = 2.0
DEFAULT_WAIT_TIMEOUT = 30.0
DEFAULT_INVALIDATION_TIMEOUT = 1.0
_REDIS_SCHEMES = ("redis", "rediss", "unix")
_CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
_SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
_URL_HELP = (
    "use memory://, redis://host:6379/0, rediss://host:6380/0 (TLS), "
    "unix:///path/to/redis.sock, redis+cluster://host1:7000,host2:7001 or "
    "redis+sentinel://host1:26379,host2:26379/service_name"
)
_MISSING: Any = object()


PartT = TypeVar("PartT")


class _OfTheLoop(Generic[PartT]):
    """A `Cache` attribute that is the running event loop's (the `Parts` of that name).

    Outside any loop, that of the loop that used the cache last.
    """

    def __set_name__(self, owner: type[Cache], name: str) -> None:
        self._name = name

    @overload
    def __get__(self, cache: None, owner: type[Cache]) -> _OfTheLoop[PartT]: ...

    @overload
    def __get__(self, cache: Cache, owner: type[Cache]) -> PartT: ...

    def __get__(self, cache: Cache | None, owner: type[Cache]) -> PartT | _OfTheLoop[PartT]:
        if cache is None:
            return self
        part: PartT = getattr(cache._here(), self._name)  # noqa: SLF001 - the cache's own
        return part


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

    storage: _OfTheLoop[Storage] = _OfTheLoop()
    """What the cache reads and writes through: the local tier (`local_ttl`), else the
    shared storage as reads see it (`shared_storage`)."""
    shared_storage: _OfTheLoop[Storage] = _OfTheLoop()
    """The storage every instance shares, as this cache reads it: while invalidations
    wait for Redis (`pending_invalidations`), reads of what they concern find nothing."""
    lock: _OfTheLoop[LockBackend] = _OfTheLoop()
    """The single-flight locks."""
    notifier: _OfTheLoop[Notifier] = _OfTheLoop()
    """The single-flight notifications, and the local tiers' announcements."""
    single_flight: _OfTheLoop[SingleFlight] = _OfTheLoop()
    """The coordination of `get_or_set`."""
    refresher: _OfTheLoop[RefreshAhead] = _OfTheLoop()
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
        if on_wait_timeout not in ("compute", "raise"):
            msg = f"on_wait_timeout must be 'compute' or 'raise', got {on_wait_timeout!r}"
            raise ConfigurationError(msg)
        keys = KeyBuilder(namespace, version)
        self._versions: dict[int, KeyBuilder] = {}
        self._invalidations = PendingInvalidations(
            self._apply,
            probe=self.check,  # does Redis answer at all?
            timeout=_checked_ttl(invalidation_timeout, "invalidation_timeout"),
            blind=self._blind,
        )
        if local_ttl is not None and isinstance(storage, MemoryStorage):
            msg = (
                "local_ttl adds an in-process tier in front of a shared storage, but "
                "MemoryStorage is already in process: drop local_ttl, or use Redis"
            )
            raise ConfigurationError(msg)
        self._local = (
            None
            if local_ttl is None
            else (_checked_ttl(local_ttl, "local_ttl"), local_max_entries, local_max_bytes)
        )
        self.default_ttl = _checked_ttl(ttl)
        #: What single flight reads of this cache (keys, serializer, telemetry).
        self._context = FlightContext(
            keys,
            serializer if serializer is not None else JsonSerializer(),
            Telemetry(
                namespace, default_observer() if observers is None else observer_of(observers)
            ),
        )
        #: Makes the single flight of one event loop's parts.
        self._new_flight = functools.partial(
            SingleFlight,
            self._context,
            lock_ttl=_checked_ttl(lock_ttl, "lock_ttl"),
            recheck_interval=_checked_ttl(recheck_interval, "recheck_interval"),
            wait_timeout=_checked_ttl(wait_timeout, "wait_timeout"),
            on_wait_timeout=on_wait_timeout,
        )
        self._client: RedisClient | None = None
        self._closing: list[Any] = []
        #: The backends of every event loop, unless `_connect` makes each loop its own.
        self._backends: tuple[Storage, LockBackend, Notifier] = (storage, lock, notifier)
        self._connect: Callable[[], _Connection] | None = None
        #: The parts of the first event loop to use the cache (made now: plain code may
        #: look at them before), and that loop once it did.
        self._first = self._assemble(storage, lock, notifier)
        self._first_loop: asyncio.AbstractEventLoop | None = None
        self._closed = False  # by `close`, until the next use
        self._loops: PerLoop[Parts] = PerLoop(
            self._enter_loop, Parts.close, holds_connections=lambda parts: parts.own
        )

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
        scheme = url.partition("://")[0].lower() if "://" in url else ""
        settings: dict[str, Any] = {
            "serializer": serializer,
            "namespace": namespace,
            "version": version,
            "ttl": ttl,
            "lock_ttl": lock_ttl,
            "recheck_interval": recheck_interval,
            "wait_timeout": wait_timeout,
            "on_wait_timeout": on_wait_timeout,
            "local_ttl": local_ttl,
            "local_max_entries": local_max_entries,
            "local_max_bytes": local_max_bytes,
            "observers": observers,
            "invalidation_timeout": invalidation_timeout,
        }
        if scheme == "memory":
            if redis_options or breaker is not None:
                extra = ", ".join(sorted([*redis_options, *(["breaker"] if breaker else [])]))
                msg = f"memory:// takes no Redis options, got {extra}: drop them, or use redis://"
                raise ConfigurationError(msg)
            storage = MemoryStorage(
                DEFAULT_MAX_ENTRIES if max_entries is None else max_entries,
                DEFAULT_MAX_BYTES if max_bytes is None else max_bytes,
            )
            return cls(storage=storage, **settings)
        if max_entries is not None or max_bytes is not None:
            msg = (
                "max_entries and max_bytes bound the in-memory storage of memory://; the "
                "local tier in front of Redis has local_max_entries and local_max_bytes"
            )
            raise ConfigurationError(msg)
        if scheme not in (*_REDIS_SCHEMES, *_CLUSTER_SCHEMES, *_SENTINEL_SCHEMES):
            msg = f"unsupported cache URL {redacted(url)!r}: {_URL_HELP}"
            raise ConfigurationError(msg)
        from atomcache_core.backends.redis import urls as _redis_urls  # noqa: PLC0415 - Redis URLs only

        options: dict[str, Any] = {"socket_connect_timeout": 2.0, "socket_timeout": 2.0}
        options.update(redis_options)
        connect = functools.partial(_redis_urls.client_for, url, options)
        client, sentinels = connect()  # the URL and the options are checked now
        breaker = breaker if breaker is not None else CircuitBreaker()
        cache = cls.from_client(client, breaker=breaker, **settings)
        each_loop = functools.partial(_connected, connect, breaker)
        cache._open_per_loop(each_loop, (client, *sentinels))  # noqa: SLF001 - part of making it
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
        storage, lock, notifier = _redis_backends(client, breaker)
        cache = cls(storage=storage, lock=lock, notifier=notifier, **settings)
        if cache.observer is not None:
            breaker.on_change = cache.telemetry.breaker
        if owns_client:
            cache._client = client
            cache._closing.append(client)
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

    def _open_per_loop(
        self, connect: Callable[[], _Connection], clients: tuple[RedisClient, ...]
    ) -> None:
        """Give each event loop backends of its own from `connect`; the first, `clients`'.

        The backends and clients of a loop close with it (`Parts.close`).
        """
        self._connect = connect
        self._first.own = True
        self._first.clients = clients

    @property
    def redis_client(self) -> RedisClient | None:
        """The redis-py client the cache made or was given to close; `None` once closed.

        `from_url` makes one for each event loop: this is the running loop's once the
        cache was used in it (before any use, the one the first loop takes), and
        `None` after `close` until the next use. `from_client(owns_client=True)`'s is
        the client it was given, until `close`.
        """
        parts = self._loops.running()
        if parts is None:
            if self._closed:
                return None
            if _loop_running():  # taken for this loop: `close` closes it
                parts = self._loops.get()
            elif self._first_loop is None:
                parts = self._first
            else:
                return None
        return parts.clients[0] if parts.clients else self._client

    def _here(self) -> Parts:
        """The parts of the running event loop; outside any loop, the last loop's."""
        try:
            return self._loops.get()
        except RuntimeError:  # no loop runs: plain code looking at the cache
            return self._loops.latest or self._first

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
            parts = self._first
        elif self._connect is not None:
            backends, clients = self._connect()
            parts = self._assemble(*backends)
            parts.own, parts.clients = True, clients
        else:
            self._check_shared(loop)
            parts = self._assemble(*self._backends)
        parts.loop = loop
        if self.pending_invalidations:  # reads of what they concern find nothing
            self._read_after_invalidations(parts)
            self._drop_skipped(parts)
        self._invalidations.resume()
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
                self.keys.invalidations,
                ttl=local_ttl,
                max_entries=max_entries,
                max_bytes=max_bytes,
            )
        parts = Parts(storage, lock, notifier, tier, RefreshAhead())
        parts.single_flight = self._new_flight(parts)
        return parts

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
        tag_keys = keys.tags(checked_tags(tags), key)
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
        invalidation = Invalidation("tags", tuple(checked_tags(tags)), version)
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
        names, version = invalidation.names, invalidation.version
        if invalidation.kind == "tags":
            builder = self.keys_of(version)
            removed = 0
            for start in range(0, len(names), TAGS_AT_ONCE):  # short scripts, one at a time
                chunk = names[start : start + TAGS_AT_ONCE]
                removed += await self.storage.invalidate_tags(
                    [bucket for tag in chunk for bucket in builder.tag_buckets(tag)]
                )
            return removed
        if invalidation.kind == "keys":
            builder = self.keys_of(version)
            await self.lock.revoke([builder.lock(key) for key in names])
            if len(names) == 1:
                return int(await self.storage.delete(builder.value(names[0])))
            return await self.storage.delete_many([builder.value(key) for key in names])
        if invalidation.kind == "pattern":
            builder = self.keys_of(version)
            await self.lock.revoke_matching(f"{escape_glob(builder.lock_prefix)}{{???}}={names[0]}")
            prefix = escape_glob(builder.value_prefix)
            return await self.storage.delete_matching(f"{prefix}{{???}}={names[0]}")
        if version is not None:
            builder = self.keys_of(version)
            await self.lock.revoke_matching(escape_glob(builder.lock_prefix) + "*")
            removed = await self.storage.clear(builder.value_prefix)
            await self.storage.clear(builder.tag_prefix)
            return removed
        first = KeyBuilder(self.namespace)
        others = escape_glob(first.versions_prefix) + "*"
        await self.lock.revoke_matching(escape_glob(first.lock_prefix) + "*")
        await self.lock.revoke_matching(f"{others}:l:*")
        removed = await self.storage.clear(first.value_prefix)
        await self.storage.clear(first.tag_prefix)
        removed += await self.storage.delete_matching(f"{others}:v:*")
        await self.storage.delete_matching(f"{others}:t:*")
        return removed

    def _blind(self, blind: bool) -> None:  # noqa: FBT001 - the callback of PendingInvalidations
        """Read the shared storage as if the waiting invalidations were applied, or not.

        In every event loop's parts; what their local tiers hold may be what the waiting
        invalidations remove, so it goes, each tier in its own loop.
        """
        for parts in self._loops.states():
            if blind:
                self._read_after_invalidations(parts)
            else:
                parts.read_through(parts.shared)
        if blind:
            self._loops.each(self._drop_skipped)

    def _read_after_invalidations(self, parts: Parts) -> None:
        """Have `parts` read the shared storage as if the waiting invalidations were applied."""
        parts.read_through(ReadsAfterInvalidation(parts.shared, self._invalidations))

    def _drop_skipped(self, parts: Parts) -> None:
        """Drop from `parts`' local tier what the waiting invalidations concern."""
        if parts.tier is not None:
            parts.tier.drop(self._invalidations.skipped_keys)

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
        options = FlightOptions(
            ttl=self._ttl(ttl),
            tags=tuple(checked_tags(tags)),
            stale_ttl=_checked_window(stale_ttl, "stale_ttl"),
            stale_if_error=_checked_window(stale_if_error, "stale_if_error"),
            beta=_checked_window(beta, "beta"),
            refresh_ahead=refresh_ahead,
            refresh_idle=None
            if refresh_idle is None
            else _checked_ttl(refresh_idle, "refresh_idle"),
            keys=None if version is None else self.keys_of(version),
        )
        outcome = await self._loops.get().single_flight.get_or_set(key, factory, options)
        return outcome.value

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
            exclude=excluded_names(exclude),
            tags=tuple(checked_tags(tags)),
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
        running = self._loops.running()
        if running is not None:
            await running.stop()  # no new work while the waiting invalidations are replayed
        await self._invalidations.close()
        await self._loops.close()  # first: a local tier stops listening before the notifier
        if self._connect is None:  # the backends every loop shares
            for backend in self._backends:
                await backend.close()
        self._client, self._closed = None, True
        for client in self._closing:  # again on a second close: a use after close reconnects
            await client.aclose()

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
        return self.default_ttl if ttl is None else _checked_ttl(ttl)


def _redis_backends(
    client: RedisClient, breaker: CircuitBreaker
) -> tuple[Storage, LockBackend, Notifier]:
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


def _connected(
    connect: Callable[[], tuple[RedisClient, list[Redis]]], breaker: CircuitBreaker
) -> _Connection:
    """New clients from `connect` (`client_for`), and the Redis backends on them."""
    client, sentinels = connect()
    return _redis_backends(client, breaker), (client, *sentinels)


def _checked_ttl(ttl: Seconds, name: str = "ttl") -> float:
    return checked_seconds(ttl, name)


def _checked_window(seconds: Seconds, name: str) -> float:
    return checked_seconds(seconds, name, zero=True)


def checked_tags(tags: Iterable[str]) -> list[str]:
    """`tags` as a list.

    Raises:
        ConfigurationError: `tags` is one string, which would pass for its letters.
    """
    if isinstance(tags, str):
        msg = f"tags must be a collection of strings such as ({tags!r},), not the string {tags!r}"
        raise ConfigurationError(msg)
    return list(tags)


def _loop_running() -> bool:
    """Whether an event loop runs in this thread now."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
