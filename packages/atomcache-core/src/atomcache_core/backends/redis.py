"""Redis backends (redis-py asyncio): storage, lock and notifier for a fleet.

All three can share one `redis.asyncio.Redis` client; `Cache.from_url` builds one.
Every Redis exception is translated into atomcache's own errors in `_translate_errors`,
the only place that knows redis-py's exception types.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from atomcache_core.backends._subscription import QueueSubscription
from atomcache_core.exceptions import BackendError, BackendUnavailableError, ConfigurationError
from atomcache_core.protocols import EVENT_STATUSES, Event

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence
    from types import TracebackType

    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub

    from atomcache_core.breaker import CircuitBreaker

__all__ = ["RedisLockBackend", "RedisNotifier", "RedisStorage"]

_CLEAR_BATCH = 500

# KEYS: value key, lock key (or the value key again when unfenced), tag keys...
# ARGV: value, ttl in milliseconds, lock token ("" when unfenced)
_SET = """
local ttl = tonumber(ARGV[2])
local fenced = ARGV[3] ~= ''
if fenced and redis.call('GET', KEYS[2]) ~= ARGV[3] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
for i = 3, #KEYS do
  local tag_key = KEYS[i]
  -- forget up to two members whose entries are gone, so tag sets stay small
  for _, member in ipairs(redis.call('SRANDMEMBER', tag_key, 2)) do
    if redis.call('EXISTS', member) == 0 then redis.call('SREM', tag_key, member) end
  end
  redis.call('SADD', tag_key, KEYS[1])
  if redis.call('PTTL', tag_key) < ttl then redis.call('PEXPIRE', tag_key, ttl) end
end
if fenced then redis.call('DEL', KEYS[2]) end
return 1
"""

_INVALIDATE_TAGS = """
local removed = 0
for i = 1, #KEYS do
  local members = redis.call('SMEMBERS', KEYS[i])
  for first = 1, #members, 500 do
    local last = math.min(first + 499, #members)
    removed = removed + redis.call('UNLINK', unpack(members, first, last))
  end
  redis.call('UNLINK', KEYS[i])
end
return removed
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class _translate_errors:  # noqa: N801 - used like a function: `with _translate_errors("GET", self._breaker):`
    """Turn redis-py and socket exceptions into `BackendError` subclasses.

    With a `CircuitBreaker`, a call is refused at once while it is open, and every
    outcome is recorded: unreachable counts as a failure, any answer (even an error
    reply) as a success.
    """

    __slots__ = ("_breaker", "_operation")

    def __init__(self, operation: str, breaker: CircuitBreaker | None = None) -> None:
        self._operation = operation
        self._breaker = breaker

    def __enter__(self) -> None:
        breaker = self._breaker
        if breaker is not None and not breaker.allow():
            msg = (
                f"Redis {self._operation} skipped: {breaker.failures} calls in a row could "
                f"not reach Redis, so the circuit is open; the next try is in "
                f"{breaker.retry_in:.1f} s. Check that Redis is running and reachable"
            )
            raise BackendUnavailableError(msg)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        unreachable = isinstance(exc, (RedisConnectionError, RedisTimeoutError, OSError))
        if self._breaker is not None and (exc is None or isinstance(exc, RedisError)):
            if unreachable:
                self._breaker.record_failure()
            else:
                self._breaker.record_success()
        if unreachable and exc is not None:
            msg = (
                f"Redis {self._operation} failed: {_describe(exc)}. Check that Redis is "
                "running and reachable at the configured URL; the next call reconnects by itself"
            )
            raise BackendUnavailableError(msg) from exc
        if isinstance(exc, RedisError):
            msg = (
                f"Redis rejected {self._operation}: {_describe(exc)}. If it names a permission "
                "(NOPERM), grant the user access to the namespace's keys and channels"
            )
            raise BackendError(msg) from exc


def _describe(exc: BaseException) -> str:
    """`Type: message` (redis-py's own repr drops the message)."""
    return f"{type(exc).__name__}: {exc}"


def _milliseconds(seconds: float) -> int:
    if not seconds > 0:
        msg = f"ttl must be a positive number of seconds, got {seconds!r}"
        raise ConfigurationError(msg)
    return max(1, round(seconds * 1000))


def _as_bytes(value: bytes | str | None) -> bytes | None:
    """Narrow redis-py's reply type: the client is checked to return bytes."""
    return value.encode() if isinstance(value, str) else value


def _escape_glob(text: str) -> str:
    """Escape `text` so Redis `MATCH` patterns take it literally."""
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)


def _check_client(client: Redis) -> Redis:
    if client.connection_pool.connection_kwargs.get("decode_responses"):
        msg = (
            "atomcache stores bytes: create the Redis client with decode_responses=False "
            "(the default), or let Cache.from_url(...) create it"
        )
        raise ConfigurationError(msg)
    return client


class RedisStorage:
    """`Storage` on Redis: one string key per entry, a set per tag.

    Values are stored with `SET ... PX`; tags are sets of keys whose expiry follows
    their longest-lived member. `clear` walks the namespace with `SCAN` (never `KEYS`).
    """

    def __init__(
        self, client: Redis, *, owns_client: bool = False, breaker: CircuitBreaker | None = None
    ) -> None:
        """Use `client` (closed on `close()` only if `owns_client`), behind `breaker`."""
        self._client = _check_client(client)
        self._owns_client = owns_client
        self._breaker = breaker
        self._set = client.register_script(_SET)
        self._invalidate_tags = client.register_script(_INVALIDATE_TAGS)

    async def get(self, key: str) -> bytes | None:
        """Return the bytes under `key`, or `None`."""
        with _translate_errors("GET", self._breaker):
            value = await self._client.get(key)
        return _as_bytes(value)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Return the bytes of each key in one `MGET`."""
        if not keys:
            return []
        with _translate_errors("MGET", self._breaker):
            values = await self._client.mget(keys)
        return [_as_bytes(value) for value in values]

    async def set(self, key: str, value: bytes, ttl: float, tag_keys: Sequence[str] = ()) -> None:
        """Store `value` for `ttl` seconds, recording it in each tag set atomically."""
        milliseconds = _milliseconds(ttl)
        if not tag_keys:
            with _translate_errors("SET", self._breaker):
                await self._client.set(key, value, px=milliseconds)
            return
        with _translate_errors("SET (with tags)", self._breaker):
            await self._set(keys=[key, key, *tag_keys], args=[value, milliseconds, ""])

    async def set_if_locked(
        self,
        key: str,
        value: bytes,
        ttl: float,
        tag_keys: Sequence[str],
        *,
        lock_key: str,
        token: str,
    ) -> bool:
        """Store and release the lock in one script, only while `token` holds `lock_key`."""
        milliseconds = _milliseconds(ttl)
        with _translate_errors("SET (fenced)", self._breaker):
            stored: int = await self._set(
                keys=[key, lock_key, *tag_keys], args=[value, milliseconds, token]
            )
        return stored == 1

    async def set_many(self, items: Mapping[str, bytes], ttl: float) -> None:
        """Store every item for `ttl` seconds in one pipeline."""
        if not items:
            return
        milliseconds = _milliseconds(ttl)
        with _translate_errors("SET (pipeline)", self._breaker):
            async with self._client.pipeline(transaction=False) as pipe:
                for key, value in items.items():
                    pipe.set(key, value, px=milliseconds)
                await pipe.execute()

    async def delete(self, key: str) -> bool:
        """Remove `key`; return whether it existed."""
        with _translate_errors("UNLINK", self._breaker):
            removed: int = await self._client.unlink(key)
        return removed > 0

    async def delete_many(self, keys: Sequence[str]) -> int:
        """Remove every key; return how many existed."""
        if not keys:
            return 0
        with _translate_errors("UNLINK", self._breaker):
            removed: int = await self._client.unlink(*keys)
        return removed

    async def clear(self, prefix: str) -> int:
        """Remove every key starting with `prefix`, walking with `SCAN`."""
        removed = 0
        with _translate_errors("SCAN/UNLINK", self._breaker):
            batch: list[bytes] = []
            async for key in self._client.scan_iter(match=_escape_glob(prefix) + "*", count=1000):
                batch.append(key)
                if len(batch) >= _CLEAR_BATCH:
                    removed += await self._client.unlink(*batch)
                    batch.clear()
            if batch:
                removed += await self._client.unlink(*batch)
        return removed

    async def invalidate_tags(self, tag_keys: Sequence[str]) -> int:
        """Remove every key recorded in these tag sets, and the sets."""
        if not tag_keys:
            return 0
        with _translate_errors("invalidate tags", self._breaker):
            removed: int = await self._invalidate_tags(keys=list(tag_keys))
        return removed

    async def close(self) -> None:
        """Close the client if this object owns it."""
        if self._owns_client:
            with _translate_errors("close"):
                await self._client.aclose()


class RedisLockBackend:
    """`LockBackend` on Redis: `SET NX PX` with a random token, Lua compare-and-delete."""

    def __init__(
        self, client: Redis, *, owns_client: bool = False, breaker: CircuitBreaker | None = None
    ) -> None:
        """Use `client` (closed on `close()` only if `owns_client`), behind `breaker`."""
        self._client = _check_client(client)
        self._owns_client = owns_client
        self._breaker = breaker
        self._release = client.register_script(_RELEASE)
        self._extend = client.register_script(_EXTEND)

    async def acquire(self, key: str, ttl: float) -> str | None:
        """Take the lock for `ttl` seconds; `None` if another owner holds it."""
        token = secrets.token_hex(16)
        with _translate_errors("SET NX (lock)", self._breaker):
            taken = await self._client.set(key, token, nx=True, px=_milliseconds(ttl))
        return token if taken else None

    async def release(self, key: str, token: str) -> bool:
        """Delete the lock only if `token` still owns it."""
        with _translate_errors("release lock", self._breaker):
            released: int = await self._release(keys=[key], args=[token])
        return released == 1

    async def extend(self, key: str, token: str, ttl: float) -> bool:
        """Reset the lock's expiry only if `token` still owns it."""
        milliseconds = _milliseconds(ttl)
        with _translate_errors("extend lock", self._breaker):
            extended: int = await self._extend(keys=[key], args=[token, milliseconds])
        return extended == 1

    async def close(self) -> None:
        """Close the client if this object owns it."""
        if self._owns_client:
            with _translate_errors("close"):
                await self._client.aclose()


class _Channel:
    """The local subscribers of one Redis channel."""

    __slots__ = ("confirmed", "subscriptions")

    def __init__(self) -> None:
        self.subscriptions: set[QueueSubscription] = set()
        self.confirmed = asyncio.Event()


class RedisNotifier:
    """`Notifier` on Redis pub/sub, one shared subscriber connection per process.

    Every `subscribe(key)` in the process is multiplexed over a single pub/sub
    connection read by one background task: a key's channel is subscribed when its
    first local subscriber arrives and unsubscribed when its last one leaves.
    Entering `subscribe` waits for Redis to confirm the subscription (at most
    `confirm_timeout` seconds), so a read made afterwards cannot miss an event.
    If the connection drops, it is re-established and its channels re-subscribed;
    events published meanwhile are lost, which is why waiters also re-check.
    """

    def __init__(
        self,
        client: Redis,
        *,
        owns_client: bool = False,
        confirm_timeout: float = 1.0,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        """Use `client` for publishing and for the shared subscriber connection."""
        self._client = _check_client(client)
        self._owns_client = owns_client
        self._breaker = breaker
        self._confirm_timeout = confirm_timeout
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._start_lock = asyncio.Lock()
        self._channels: dict[str, _Channel] = {}

    async def publish(self, key: str, event: Event) -> None:
        """Publish `event` on the channel `key`."""
        with _translate_errors("PUBLISH", self._breaker):
            await self._client.publish(key, f"{event.status}:{event.version}")

    @asynccontextmanager
    async def subscribe(self, key: str) -> AsyncIterator[QueueSubscription]:
        """Receive events on `key` while the block runs; active once entered."""
        subscription = QueueSubscription()
        channel = self._channels.get(key)
        is_new = channel is None
        if channel is None:
            channel = self._channels[key] = _Channel()
        channel.subscriptions.add(subscription)
        try:
            if is_new:
                pubsub = await self._started()
                with _translate_errors("SUBSCRIBE", self._breaker):
                    await pubsub.subscribe(key)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(channel.confirmed.wait(), self._confirm_timeout)
            yield subscription
        finally:
            channel.subscriptions.discard(subscription)
            if not channel.subscriptions and self._channels.get(key) is channel:
                del self._channels[key]
                if self._pubsub is not None:
                    with contextlib.suppress(RedisError, OSError):
                        await self._pubsub.unsubscribe(key)

    async def close(self) -> None:
        """Stop the reader, close the subscriber connection and, if owned, the client."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]
            self._pubsub = None
        self._channels.clear()
        if self._owns_client:
            with _translate_errors("close"):
                await self._client.aclose()

    @property
    def subscribed_channels(self) -> int:
        """Number of channels this process listens to now."""
        return len(self._channels)

    async def _started(self) -> PubSub:
        """The shared pub/sub connection, connected, with its reader task running."""
        if self._pubsub is not None:
            return self._pubsub
        async with self._start_lock:
            if self._pubsub is None:
                pubsub = self._client.pubsub()
                with _translate_errors("connect (pub/sub)", self._breaker):
                    await pubsub.connect()  # type: ignore[no-untyped-call]
                self._pubsub = pubsub
                self._reader = asyncio.create_task(self._read(pubsub), name="atomcache-notifier")
        return self._pubsub

    async def _read(self, pubsub: PubSub) -> None:
        """Dispatch messages from the shared connection until closed."""
        backoff = 0.05
        while True:
            try:
                message = await pubsub.get_message(timeout=None)
            except (RedisError, OSError):
                # The connection dropped and redis-py's retries gave up: Redis is away.
                # The next read reconnects and re-subscribes; waiters re-check meanwhile.
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.05
            if message is not None:
                self._dispatch(message)

    def _dispatch(self, message: dict[str, Any]) -> None:
        raw_channel = message.get("channel")
        if not isinstance(raw_channel, bytes):
            return
        channel = self._channels.get(raw_channel.decode(errors="replace"))
        if channel is None:
            return
        kind = message.get("type")
        if kind == "subscribe":
            channel.confirmed.set()
        elif kind == "message":
            event = _parse_event(raw_channel.decode(errors="replace"), message.get("data"))
            if event is not None:
                for subscription in channel.subscriptions:
                    subscription.deliver(event)


def _parse_event(key: str, data: object) -> Event | None:
    if not isinstance(data, bytes):
        return None
    status, _, version = data.decode(errors="replace").partition(":")
    if status not in EVENT_STATUSES:
        return None
    return Event(key, status, version)  # type: ignore[arg-type] # checked just above
