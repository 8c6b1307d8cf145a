"""The `Cache` facade: the one object applications hold."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from atomcache_core.backends.memory import MemoryLockBackend, MemoryNotifier, MemoryStorage
from atomcache_core.entry import Entry, decode_entry, encode_entry
from atomcache_core.exceptions import ConfigurationError, SerializationError
from atomcache_core.keys import KeyBuilder
from atomcache_core.serializers import JsonSerializer
from atomcache_core.stats import CacheStats

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from types import TracebackType

    from redis.asyncio import Redis
    from typing_extensions import Self

    from atomcache_core.protocols import LockBackend, Notifier, Serializer, Storage

__all__ = ["DEFAULT_NAMESPACE", "DEFAULT_TTL", "Cache"]

DEFAULT_NAMESPACE = "default"
DEFAULT_TTL = 300.0
_REDIS_SCHEMES = ("redis", "rediss", "unix")
_MISSING: Any = object()


class Cache:
    """An async cache over pluggable backends, in-memory by default.

    Args:
        storage: Where entries live. Default: a bounded `MemoryStorage`.
        lock: Single-flight locks. Default: `MemoryLockBackend`.
        notifier: Wake-ups for waiters. Default: `MemoryNotifier`.
        serializer: Values to bytes. Default: `JsonSerializer`.
        namespace: Keeps this cache's keys apart from other caches on the same storage.
        ttl: Default time to live in seconds for `set` and `get_or_set`.

    Raises:
        ConfigurationError: an argument is invalid.
    """

    def __init__(
        self,
        *,
        storage: Storage | None = None,
        lock: LockBackend | None = None,
        notifier: Notifier | None = None,
        serializer: Serializer | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        ttl: float = DEFAULT_TTL,
    ) -> None:
        """Assemble a cache from its parts."""
        self.storage: Storage = storage if storage is not None else MemoryStorage()
        self.lock: LockBackend = lock if lock is not None else MemoryLockBackend()
        self.notifier: Notifier = notifier if notifier is not None else MemoryNotifier()
        self.serializer: Serializer = serializer if serializer is not None else JsonSerializer()
        self.keys = KeyBuilder(namespace)
        self.default_ttl = _checked_ttl(ttl)
        self._stats = CacheStats()
        self._client: Redis | None = None

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        ttl: float = DEFAULT_TTL,
        serializer: Serializer | None = None,
        max_entries: int = 10_000,
        **redis_options: Any,
    ) -> Cache:
        """Create a cache from a URL.

        `memory://` gives the embedded in-memory backends (`max_entries` bounds them).
        `redis://`, `rediss://` (TLS) and `unix://` give the Redis backends sharing one
        client; `redis_options` go to `redis.asyncio.Redis.from_url`.

        Raises:
            ConfigurationError: the URL's scheme is not one of these.
        """
        scheme = url.partition("://")[0].lower() if "://" in url else ""
        if scheme == "memory":
            return cls(
                storage=MemoryStorage(max_entries),
                serializer=serializer,
                namespace=namespace,
                ttl=ttl,
            )
        if scheme not in _REDIS_SCHEMES:
            msg = (
                f"unsupported cache URL {url!r}: use memory://, redis://host:6379/0, "
                "rediss://host:6380/0 (TLS) or unix:///path/to/redis.sock"
            )
            raise ConfigurationError(msg)
        from redis.asyncio import Redis  # noqa: PLC0415 - only Redis URLs need it

        from atomcache_core.backends.redis import (  # noqa: PLC0415
            RedisLockBackend,
            RedisNotifier,
            RedisStorage,
        )

        options: dict[str, Any] = {"socket_connect_timeout": 2.0, "socket_timeout": 2.0}
        options.update(redis_options)
        client = Redis.from_url(url, **options)
        cache = cls(
            storage=RedisStorage(client),
            lock=RedisLockBackend(client),
            notifier=RedisNotifier(client),
            serializer=serializer,
            namespace=namespace,
            ttl=ttl,
        )
        cache._client = client
        return cache

    @property
    def namespace(self) -> str:
        """The namespace this cache's keys live in."""
        return self.keys.namespace

    @property
    def stats(self) -> CacheStats:
        """Live counters of hits, misses, computations and errors."""
        return self._stats

    async def get(self, key: str, default: Any = None) -> Any:
        """Return the fresh value stored under `key`, or `default`."""
        data = await self.storage.get(self.keys.value(key))
        return self._read(data, time.time(), default)

    async def set(
        self, key: str, value: Any, ttl: float | None = None, tags: Iterable[str] = ()
    ) -> None:
        """Store `value` under `key` for `ttl` seconds (default: the cache's TTL).

        Raises:
            SerializationError: `value` cannot be serialized; nothing was written.
        """
        seconds = self._ttl(ttl)
        tag_keys = [self.keys.tag(tag) for tag in _checked_tags(tags)]
        data = self._encode(value, seconds, time.time())
        await self.storage.set(self.keys.value(key), data, seconds, tag_keys)

    async def delete(self, key: str) -> bool:
        """Remove `key`; return whether it was stored."""
        return await self.storage.delete(self.keys.value(key))

    async def exists(self, key: str) -> bool:
        """Whether a fresh value is stored under `key`."""
        entry = await self._entry(key)
        return entry is not None and entry.is_fresh(time.time())

    async def ttl(self, key: str) -> float | None:
        """Seconds until `key` expires, or `None` when it holds no fresh value."""
        entry = await self._entry(key)
        now = time.time()
        if entry is None or not entry.is_fresh(now):
            return None
        return entry.fresh_until - now

    async def get_many(self, keys: Sequence[str], default: Any = None) -> list[Any]:
        """Return the value of each key, in order, `default` for each missing one."""
        datas = await self.storage.get_many([self.keys.value(key) for key in keys])
        now = time.time()
        return [self._read(data, now, default) for data in datas]

    async def set_many(self, mapping: Mapping[str, Any], ttl: float | None = None) -> None:
        """Store every key and value of `mapping` for `ttl` seconds.

        Raises:
            SerializationError: a value cannot be serialized; nothing was written.
        """
        seconds = self._ttl(ttl)
        now = time.time()
        items = {
            self.keys.value(key): self._encode(value, seconds, now)
            for key, value in mapping.items()
        }
        await self.storage.set_many(items, seconds)

    async def delete_many(self, keys: Sequence[str]) -> int:
        """Remove every key; return how many were stored."""
        return await self.storage.delete_many([self.keys.value(key) for key in keys])

    async def clear(self) -> int:
        """Remove every entry and tag of this namespace, and no other; return the entries."""
        removed = await self.storage.clear(self.keys.value_prefix)
        await self.storage.clear(self.keys.tag_prefix)
        return removed

    async def invalidate_tags(self, *tags: str) -> int:
        """Remove every entry stored with any of `tags`; return how many."""
        return await self.storage.invalidate_tags(
            [self.keys.tag(tag) for tag in _checked_tags(tags)]
        )

    async def close(self) -> None:
        """Stop background work and close the connections this cache opened."""
        await self.notifier.close()
        await self.lock.close()
        await self.storage.close()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

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

    async def _entry(self, key: str) -> Entry | None:
        data = await self.storage.get(self.keys.value(key))
        return decode_entry(data) if data is not None else None

    def _read(self, data: bytes | None, now: float, default: Any) -> Any:
        """Turn stored bytes into the fresh value, or `default`, counting the outcome."""
        value = self._decode(data, now)
        if value is _MISSING:
            self._stats.misses += 1
            return default
        self._stats.hits += 1
        return value

    def _decode(self, data: bytes | None, now: float) -> Any:
        if data is None:
            return _MISSING
        entry = decode_entry(data)
        if entry is None:
            self._stats.corrupt += 1
            return _MISSING
        if not entry.is_fresh(now):
            return _MISSING
        try:
            return self.serializer.loads(entry.payload)
        except SerializationError:
            self._stats.corrupt += 1
            return _MISSING

    def _encode(self, value: Any, ttl: float, now: float) -> bytes:
        payload = self.serializer.dumps(value)
        return encode_entry(Entry(payload, now, now + ttl, now + ttl))

    def _ttl(self, ttl: float | None) -> float:
        return self.default_ttl if ttl is None else _checked_ttl(ttl)


def _checked_ttl(ttl: float) -> float:
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not (0 < ttl < math.inf):
        msg = f"ttl must be a positive, finite number of seconds, got {ttl!r}"
        raise ConfigurationError(msg)
    return float(ttl)


def _checked_tags(tags: Iterable[str]) -> list[str]:
    if isinstance(tags, str):
        msg = f"tags must be a collection of strings such as ({tags!r},), not the string {tags!r}"
        raise ConfigurationError(msg)
    return list(tags)
