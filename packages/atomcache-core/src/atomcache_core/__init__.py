"""atomcache core: an async single-flight cache with pluggable backends.

`Cache()` works in memory with no server; `Cache.from_url("redis://...")` shares one
Redis across a fleet of processes.
"""

from atomcache_core._default import cached, configure_default, default_cache
from atomcache_core._flight.options import Outcome, Uncacheable
from atomcache_core._seconds import MAX_TTL
from atomcache_core._version import __version__
from atomcache_core.backends.memory import MemoryLockBackend, MemoryNotifier, MemoryStorage
from atomcache_core.backends.redis import RedisLockBackend, RedisNotifier, RedisStorage
from atomcache_core.backends.tiered import TieredStorage
from atomcache_core.breaker import CircuitBreaker
from atomcache_core.cache import Cache
from atomcache_core.exceptions import (
    AtomCacheError,
    BackendAuthenticationError,
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
    LockError,
    LockTimeoutError,
    SerializationError,
)
from atomcache_core.protocols import Event, LockBackend, Notifier, Serializer, Storage, Subscription
from atomcache_core.serializers import (
    JsonSerializer,
    MsgspecSerializer,
    OrjsonSerializer,
    PickleSerializer,
)
from atomcache_core.stats import CacheStats

__all__ = [
    "MAX_TTL",
    "AtomCacheError",
    "BackendAuthenticationError",
    "BackendError",
    "BackendUnavailableError",
    "Cache",
    "CacheStats",
    "CircuitBreaker",
    "ConfigurationError",
    "Event",
    "JsonSerializer",
    "LockBackend",
    "LockError",
    "LockTimeoutError",
    "MemoryLockBackend",
    "MemoryNotifier",
    "MemoryStorage",
    "MsgspecSerializer",
    "Notifier",
    "OrjsonSerializer",
    "Outcome",
    "PickleSerializer",
    "RedisLockBackend",
    "RedisNotifier",
    "RedisStorage",
    "SerializationError",
    "Serializer",
    "Storage",
    "Subscription",
    "TieredStorage",
    "Uncacheable",
    "__version__",
    "cached",
    "configure_default",
    "default_cache",
]
