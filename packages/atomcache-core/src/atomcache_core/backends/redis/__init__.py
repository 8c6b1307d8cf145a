"""Redis backends (redis-py asyncio): storage, lock and notifier for a fleet.

All three can share one `redis.asyncio.Redis` client; `Cache.from_url` builds one.
Every Redis exception is translated into atomcache's own errors in
`errors.translate_errors`, the only place that knows redis-py's exception types.

One idea per module, each importing only those listed before it:

- `clients`: the `RedisClient` type, its checks, the clients pub/sub connections use;
- `urls`: clients from `Cache.from_url` URLs (one server, cluster, Sentinel), and the
  URL of a client, for messages;
- `batches`: keys found by `SCAN` in batches, calls a few at a time;
- `errors`: redis-py's exceptions translated into atomcache's, in one table;
- `scripts`: the Lua scripts, read once from this package's `.lua` files;
- `storage`: `RedisStorage` and the wrapping a stored value carries;
- `lock`: `RedisLockBackend`;
- `notifier`: `RedisNotifier`.
"""

from __future__ import annotations

from atomcache_core.backends.redis.clients import RedisClient
from atomcache_core.backends.redis.lock import RedisLockBackend
from atomcache_core.backends.redis.notifier import RedisNotifier
from atomcache_core.backends.redis.storage import RedisStorage

__all__ = ["RedisClient", "RedisLockBackend", "RedisNotifier", "RedisStorage"]
