"""Redis backends (redis-py asyncio): storage, lock and notifier for a fleet.

All three can share one `redis.asyncio.Redis` client; `Cache.from_url` builds one.
Every Redis exception is translated into atomcache's own errors in `_translate_errors`,
the only place that knows redis-py's exception types.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import secrets
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeVar

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import SSLConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError
from redis.backoff import NoBackoff
from redis.crc import key_slot
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

from atomcache_core._background import (
    BackgroundTasks,
    keep_trying,
    start_over_after_fork,
    stop_tasks,
    within,
)
from atomcache_core._redis_urls import url_of
from atomcache_core.backends._pipelining import ReadBatcher
from atomcache_core.backends._subscription import QueueSubscription
from atomcache_core.exceptions import (
    AtomCacheError,
    BackendAuthenticationError,
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
)
from atomcache_core.keys import escape_glob, stamp_key
from atomcache_core.protocols import EVENT_STATUSES, Event

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
    from types import TracebackType

    from redis.asyncio.client import PubSub
    from redis.asyncio.cluster import ClusterNode

    from atomcache_core.breaker import CircuitBreaker

__all__ = ["RedisClient", "RedisLockBackend", "RedisNotifier", "RedisStorage"]

_T = TypeVar("_T")

RedisClient: TypeAlias = Redis | RedisCluster
"""A redis-py asyncio client: one server (also behind Sentinel) or a Redis Cluster."""

# What `Redis(...)` accepts, to build a node's own client from a cluster node's settings.
_REDIS_PARAMETERS = frozenset(inspect.signature(Redis.__init__).parameters) - {"self"}

_CLEAR_BATCH = 500

# The stored form of a value (`_WRAP`): a NUL byte, ``S<since>:<n>:`` then, n times,
# ``<length>:<stamp key>``, then the value's bytes. `since` is when the value's
# computation began (the lock's time, else the write's), in microseconds of the server's
# clock; the stamp keys (`keys.stamp_key`) are those of the value's tags. A value is
# live while every stamp exists and is older than `since`. Values without the prefix
# (written before stamps existed) are live as they are.
_WRAP = """
local function unwrap(value)
  if string.sub(value, 1, 2) ~= '\\0S' then return nil end
  local colon = string.find(value, ':', 3, true)
  local after = colon and string.find(value, ':', colon + 1, true)
  if not after then return nil end  -- not a wrapping: bytes planted under the key
  local since = tonumber(string.sub(value, 3, colon - 1))
  local count = tonumber(string.sub(value, colon + 1, after - 1))
  if not since or not count then return nil end
  local position, stamps = after + 1, {}
  for i = 1, count do
    local stop = string.find(value, ':', position, true)
    local length = stop and tonumber(string.sub(value, position, stop - 1))
    if not length then return nil end
    stamps[i] = string.sub(value, stop + 1, stop + length)
    position = stop + 1 + length
  end
  return since, stamps, position
end

local function live(since, stamps)
  for _, stamp_key in ipairs(stamps) do
    local stamp = redis.call('GET', stamp_key)
    if not stamp or not string.match(stamp, '^%d+$') or tonumber(stamp) >= since then
      return false
    end
  end
  return true
end

local function now()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000000 + tonumber(time[2])
end
"""

# KEYS: value key, lock key (the value key again when unfenced), n tag keys, their n
# stamp keys. ARGV: value, ttl in milliseconds, lock token ("" when unfenced), "nx" to
# store only where nothing live is (optional). Returns 1 when it stored; 0 when another
# owner holds the lock; 2 when it was invalidated or a newer value was stored since the
# computation began (the lock's time, carried by its token).
_SET = (
    _WRAP
    + """
local ttl = tonumber(ARGV[2])
local token = ARGV[3]
local count = (#KEYS - 2) / 2
local since, holder
if string.sub(token, -1) == '!' then  -- a revoked token (never handed out, but refused)
  token = string.sub(token, 1, -2)
end
if token ~= '' then
  holder = redis.call('GET', KEYS[2])
  if holder and holder ~= token and holder ~= token .. '!' then return 0 end
  -- a lock that vanished (evicted, expired) is no newer owner: the checks below decide
  since = tonumber(string.match(token, ':(%d+)$'))
end
since = since or now()
local refused = holder == token .. '!'
local current = redis.call('GET', KEYS[1])
if current and not refused then
  local current_since, stamps = unwrap(current)
  if ARGV[4] == 'nx' and (not current_since or live(current_since, stamps)) then return 0 end
  refused = token ~= '' and current_since ~= nil and current_since >= since
end
for i = 1, count do
  if refused then break end
  local stamp = redis.call('GET', KEYS[2 + count + i])
  refused = stamp ~= false and (not string.match(stamp, '^%d+$') or tonumber(stamp) >= since)
end
if refused then
  if holder then redis.call('DEL', KEYS[2]) end
  return 2
end
local parts = {'\\0S', string.format('%.0f', since), ':', count, ':'}
for i = 1, count do
  local stamp_key = KEYS[2 + count + i]
  parts[#parts + 1] = #stamp_key .. ':' .. stamp_key
end
parts[#parts + 1] = ARGV[1]
redis.call('SET', KEYS[1], table.concat(parts), 'PX', ttl)
for i = 1, count do
  local tag_key, stamp_key = KEYS[2 + i], KEYS[2 + count + i]
  -- forget up to two members whose entries are gone, so tag sets stay small
  for _, member in ipairs(redis.call('SRANDMEMBER', tag_key, 2)) do
    if redis.call('EXISTS', member) == 0 then redis.call('SREM', tag_key, member) end
  end
  redis.call('SADD', tag_key, KEYS[1])
  if redis.call('PTTL', tag_key) < ttl then redis.call('PEXPIRE', tag_key, ttl) end
  if redis.call('EXISTS', stamp_key) == 0 then
    -- a new stamp, older than this value: only computations begun before it are refused
    redis.call('SET', stamp_key, string.format('%.0f', since - 1), 'PX', ttl)
  elseif redis.call('PTTL', stamp_key) < ttl then
    redis.call('PEXPIRE', stamp_key, ttl)
  end
end
if holder then redis.call('DEL', KEYS[2]) end
return 1
"""
)

# KEYS: stamp keys. ARGV: lock token, ttl in milliseconds. Makes the stamps a
# computation begun at the token's time will write, so an invalidation meanwhile finds
# them (it only moves stamps that exist).
_TRACK = (
    _WRAP
    + """
local since = tonumber(string.match(ARGV[1], ':(%d+)$')) or now()
local ttl = tonumber(ARGV[2])
for i = 1, #KEYS do
  if not redis.call('SET', KEYS[i], string.format('%.0f', since - 1), 'NX', 'PX', ttl) then
    if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
  end
end
return #KEYS
"""
)

# KEYS: n tag keys, their n stamp keys. Removes the entries of the sets and the sets,
# then moves every existing stamp to now (entries the sets no longer list, such as
# those whose set was evicted, and computations under way, are refused by it).
# Removing first matters under `noeviction` with a full memory: a script that has
# written may go on writing; a stamp that cannot be moved is deleted instead.
_INVALIDATE_TAGS = (
    _WRAP
    + """
local count = #KEYS / 2
local removed = 0
for i = 1, count do
  local members = redis.call('SMEMBERS', KEYS[i])
  for first = 1, #members, 500 do
    local last = math.min(first + 499, #members)
    removed = removed + redis.call('UNLINK', unpack(members, first, last))
  end
  redis.call('UNLINK', KEYS[i])
end
local stamp = string.format('%.0f', now())
for i = count + 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    if redis.pcall('SET', KEYS[i], stamp, 'KEEPTTL').err then
      redis.call('DEL', KEYS[i])
    end
  end
end
return removed
"""
)

# Takes the lock unless it is held; the token is ARGV[1] and the server's time in
# microseconds (when the computation begins, for `_SET`). Also succeeds when the lock
# already holds a token of ARGV[1]: the client retried a call whose answer was lost.
_ACQUIRE = (
    _WRAP
    + """
local token = ARGV[1] .. ':' .. string.format('%.0f', now())
if redis.call('SET', KEYS[1], token, 'NX', 'PX', ARGV[2]) then return token end
local holder = redis.call('GET', KEYS[1])
if holder and string.sub(holder, 1, #ARGV[1] + 1) == ARGV[1] .. ':' then
  return (string.gsub(holder, '!$', ''))  -- revoked meanwhile: the fenced write refuses
end
return false
"""
)

# The owner of a lock is its token, revoked (`_REVOKE`: "!" appended) or not. ARGV[2]
# "prefix": any token that begins with ARGV[1] (a call whose answer was lost).
_OWNS = """
local function owns(holder)
  if not holder then return false end
  if holder == ARGV[1] or holder == ARGV[1] .. '!' then return true end
  return ARGV[2] == 'prefix' and string.sub(holder, 1, #ARGV[1] + 1) == ARGV[1] .. ':'
end
"""

_RELEASE = (
    _OWNS
    + """
if owns(redis.call('GET', KEYS[1])) then return redis.call('DEL', KEYS[1]) end
return 0
"""
)

_EXTEND = (
    _OWNS
    + """
if owns(redis.call('GET', KEYS[1])) then return redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 0
"""
)

# Marks the computations holding these locks as revoked: they keep the lock, but their
# fenced write (`_SET`) stores nothing. Returns how many were marked.
_REVOKE = """
local revoked = 0
for i = 1, #KEYS do
  local holder = redis.call('GET', KEYS[i])
  if holder and string.sub(holder, -1) ~= '!' then
    redis.call('SET', KEYS[i], holder .. '!', 'KEEPTTL')
    revoked = revoked + 1
  end
end
return revoked
"""


class _translate_errors:  # noqa: N801 - used like a function: `with _translate_errors("GET", ...):`
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
        self._operation = operation
        self._client = client
        self._breaker = breaker

    def __enter__(self) -> None:
        breaker = self._breaker
        if breaker is not None and not breaker.allow():
            raise _skipped(self._operation, breaker)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
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


def _node_breaker(
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


def _milliseconds(seconds: float) -> int:
    if not seconds > 0:
        msg = f"ttl must be a positive number of seconds, got {seconds!r}"
        raise ConfigurationError(msg)
    return max(1, round(seconds * 1000))


def _as_bytes(value: bytes | str | None) -> bytes | None:
    """Narrow redis-py's reply type: the client is checked to return bytes."""
    return value.encode() if isinstance(value, str) else value


def _check_client(client: RedisClient) -> RedisClient:
    if client.get_encoder().decode_responses:
        msg = (
            "atomcache stores bytes: create the Redis client with decode_responses=False "
            "(the default), or let Cache.from_url(...) create it"
        )
        raise ConfigurationError(msg)
    return client


#: How many values' tag stamps `RedisStorage` remembers (`_remember`).
_STAMPS_KEPT = 10_000


def _hash_tag(key: str) -> str:
    """The part of `key` Redis Cluster hashes: its first non-empty `{...}`, else all of it."""
    start = key.find("{")
    end = key.find("}", start + 1) if start >= 0 else -1
    return key[start + 1 : end] if end > start + 1 else key


class _Wrapped:
    """A stored value's wrapping (`_WRAP`): when its computation began, its tags' stamps."""

    __slots__ = ("body", "foreign", "since", "stamps")

    def __init__(
        self, body: bytes, since: int, stamps: tuple[str, ...], *, foreign: bool = False
    ) -> None:
        self.body = body
        self.since = since
        self.stamps = stamps
        self.foreign = foreign

    @classmethod
    def of(cls, value: bytes | None, key: str) -> _Wrapped | None:
        """The wrapping of `value`, stored under `key`; `None` when it has none.

        Bytes that begin like a wrapping but are not one (planted under the key) count
        as having none: the cache then finds no entry in them, a corrupt miss. Stamps
        outside the key's hash tag (its cluster slot) are no stamps of its tags: such a
        value is never live.
        """
        if value is None or value[:2] != b"\0S":
            return None
        try:
            colon = value.index(b":", 2)
            after = value.index(b":", colon + 1)
            position = after + 1
            stamps = []
            for _ in range(int(value[colon + 1 : after])):
                stop = value.index(b":", position)
                end = stop + 1 + int(value[position:stop])
                stamps.append(value[stop + 1 : end].decode())
                position = end
        except ValueError:  # UnicodeDecodeError included
            return None
        bucket = _hash_tag(key)
        if any(_hash_tag(stamp) != bucket for stamp in stamps):
            return cls(b"", 0, (), foreign=True)  # not ours: never served
        return cls(value[position:], int(value[2:colon]), tuple(stamps))

    def live(self, stamps: Mapping[str, bytes | str | None]) -> bool:
        """Whether every stamp exists and is older than the value's computation."""
        if self.foreign:
            return False
        for name in self.stamps:
            stamp = stamps.get(name)
            if stamp is None or not stamp.isdigit() or int(stamp) >= self.since:
                return False
        return True


class RedisStorage:
    """`Storage` on Redis: one string key per entry, a set per tag.

    Values are stored with `SET ... PX`; tags are sets of keys whose expiry follows
    their longest-lived member. `clear` walks the namespace with `SCAN` (never `KEYS`).
    """

    def __init__(
        self,
        client: RedisClient,
        *,
        owns_client: bool = False,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        """Use `client` (closed on `close()` only if `owns_client`), behind `breaker`."""
        self._client = _check_client(client)
        self._cluster = client if isinstance(client, RedisCluster) else None
        self._owns_client = owns_client
        self._breaker = breaker
        self._set = client.register_script(_SET)
        self._track = client.register_script(_TRACK)
        self._invalidate_tags = client.register_script(_INVALIDATE_TAGS)
        # One server: the reads issued in one event-loop turn share one MGET. A
        # cluster's keys live on several nodes: its reads go one by one.
        self._reads = ReadBatcher(self._get_one, self._mget) if self._cluster is None else None
        #: The tag stamps of the tagged values read lately, read with them next time.
        self._stamps_of: dict[str, tuple[str, ...]] = {}

    async def get(self, key: str) -> bytes | None:
        """Return the bytes under `key`, or `None` (auto-pipelined: `ReadBatcher`)."""
        if self._reads is not None:
            return await self._reads.get(key)
        return await self._get_one(key)

    async def _get_one(self, key: str) -> bytes | None:
        breaker = _node_breaker(self._cluster, self._breaker, key)
        stamps = self._stamps_of.get(key)
        if not stamps:
            with _translate_errors("GET", self._client, breaker):
                value = _as_bytes(await self._client.get(key))
            if value is None or value[:2] != b"\0S":
                return value  # absent, or stored before values had a wrapping
            wrapped = _Wrapped.of(value, key)
            if wrapped is not None and not wrapped.stamps and not wrapped.foreign:
                return wrapped.body  # no tags: nothing to check
            return (await self._checked([key], [value], {}, breaker))[0]
        return (await self._mget([key], breaker))[0]  # its stamps share its slot

    async def _mget(
        self, keys: Sequence[str], breaker: CircuitBreaker | None = None
    ) -> list[bytes | None]:
        """The values of `keys` and the stamps they were last seen with, in one `MGET`.

        `breaker`: that of the node of `keys` on a cluster; the storage's by default.
        """
        breaker = self._breaker if breaker is None else breaker
        stamps = list(dict.fromkeys(s for key in keys for s in self._stamps_of.get(key, ())))
        with _translate_errors("MGET", self._client, breaker):
            found = await self._read_many([*keys, *stamps])
        known = dict(zip(stamps, found[len(keys) :], strict=True))
        return await self._checked(keys, found[: len(keys)], known, breaker)

    async def _checked(
        self,
        keys: Sequence[str],
        values: Sequence[bytes | str | None],
        known: dict[str, bytes | None],
        breaker: CircuitBreaker | None,
    ) -> list[bytes | None]:
        """The stored bytes of each value, `None` for those their tags' stamps invalidate.

        `known` holds the stamps read with the values. A value whose stamps were not
        among them (its first read here, or its tags changed) has them read now, in a
        second round trip, and remembered for the next read.
        """
        wrapped = [
            _Wrapped.of(_as_bytes(value), key) for key, value in zip(keys, values, strict=True)
        ]
        missing = [
            stamp
            for found in wrapped
            if found is not None
            for stamp in found.stamps
            if stamp not in known
        ]
        if missing:
            missing = list(dict.fromkeys(missing))
            with _translate_errors("MGET (tag stamps)", self._client, breaker):
                known.update(zip(missing, await self._read_many(missing), strict=True))
        results: list[bytes | None] = []
        for key, value, found in zip(keys, values, wrapped, strict=True):
            if found is None:
                results.append(_as_bytes(value))
                continue
            if found.stamps:
                self._remember(key, found.stamps)
            results.append(found.body if found.live(known) else None)
        return results

    def _remember(self, key: str, stamps: tuple[str, ...]) -> None:
        """Read `key`'s tag stamps with it from now on (a bounded memo)."""
        if self._stamps_of.get(key) != stamps:
            if len(self._stamps_of) >= _STAMPS_KEPT:  # the oldest goes
                del self._stamps_of[next(iter(self._stamps_of))]
            self._stamps_of[key] = stamps

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Return the bytes of each key in one `MGET` (one per slot on a cluster)."""
        return await self._mget(keys) if keys else []

    async def _read_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """`MGET` of `keys`; on a cluster, one per slot (redis-py's `mget_nonatomic`)."""
        found = await (
            self._client.mget(keys) if self._cluster is None else self._cluster.mget_nonatomic(keys)
        )
        return [_as_bytes(value) for value in found]

    async def set(self, key: str, value: bytes, ttl: float, tag_keys: Sequence[str] = ()) -> None:
        """Store `value` for `ttl` seconds, recording it in each tag set atomically."""
        await self._store(key, value, ttl, tag_keys, only_new=False)

    async def add(self, key: str, value: bytes, ttl: float, tag_keys: Sequence[str] = ()) -> bool:
        """`SET NX`, or the tagging script with its `nx` flag: one atomic step either way."""
        return await self._store(key, value, ttl, tag_keys, only_new=True)

    async def _store(
        self, key: str, value: bytes, ttl: float, tag_keys: Sequence[str], *, only_new: bool
    ) -> bool:
        """The writing script, unfenced (`SET NX` when `only_new`)."""
        milliseconds = _milliseconds(ttl)
        breaker = _node_breaker(self._cluster, self._breaker, key)
        with _translate_errors("SET NX" if only_new else "SET", self._client, breaker):
            stored: int = await self._set(
                keys=[key, key, *tag_keys, *map(stamp_key, tag_keys)],
                args=[value, milliseconds, "", *(["nx"] if only_new else [])],
            )
        return stored == 1

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
        """Store and release the lock in one script (see `Storage.set_if_locked`)."""
        milliseconds = _milliseconds(ttl)
        with _translate_errors(
            "SET (fenced)", self._client, _node_breaker(self._cluster, self._breaker, key)
        ):
            stored: int = await self._set(
                keys=[key, lock_key, *tag_keys, *map(stamp_key, tag_keys)],
                args=[value, milliseconds, token],
            )
        return stored == 1

    async def track_tags(self, tag_keys: Sequence[str], *, token: str, ttl: float) -> None:
        """Make the stamps of `tag_keys` exist, older than the computation of `token`."""
        if not tag_keys:
            return
        milliseconds = _milliseconds(ttl)
        with _translate_errors(
            "track tags", self._client, _node_breaker(self._cluster, self._breaker, tag_keys[0])
        ):
            await self._track(
                keys=[stamp_key(tag_key) for tag_key in tag_keys], args=[token, milliseconds]
            )

    async def set_many(self, items: Mapping[str, bytes], ttl: float) -> None:
        """Store every item for `ttl` seconds in one pipeline."""
        if not items:
            return
        if self._cluster is not None:  # a script per key, on the node of its slot
            store = functools.partial(self._store, ttl=ttl, tag_keys=(), only_new=False)
            await _in_turns([functools.partial(store, key, value) for key, value in items.items()])
            return
        milliseconds = _milliseconds(ttl)
        with _translate_errors("SET (pipeline)", self._client, self._breaker):
            async with self._client.pipeline(transaction=False) as pipe:
                for key, value in items.items():  # queued; redis-py loads the script if needed
                    args = [value, milliseconds, ""]
                    await self._set(keys=[key, key], args=args, client=pipe)  # type: ignore[arg-type]
                await pipe.execute()

    async def delete(self, key: str) -> bool:
        """Remove `key`; return whether it existed."""
        with _translate_errors(
            "UNLINK", self._client, _node_breaker(self._cluster, self._breaker, key)
        ):
            removed: int = await self._client.unlink(key)
        return removed > 0

    async def delete_many(self, keys: Sequence[str]) -> int:
        """Remove every key; return how many existed."""
        if not keys:
            return 0
        with _translate_errors("UNLINK", self._client, self._breaker):
            removed: int = await self._client.unlink(*keys)
        return removed

    async def clear(self, prefix: str) -> int:
        """Remove every key starting with `prefix`, walking with `SCAN`."""
        return await self.delete_matching(escape_glob(prefix) + "*")

    async def delete_matching(self, pattern: str) -> int:
        """Remove every key matching the glob `pattern`, walking with `SCAN` (every master)."""

        async def unlink(keys: list[bytes]) -> int:
            removed: int = await self._client.unlink(*keys)
            return removed

        with _translate_errors("SCAN/UNLINK", self._client, self._breaker):
            return await _in_batches(self._client, pattern, unlink)

    async def invalidate_tags(self, tag_keys: Sequence[str]) -> int:
        """Remove every key recorded in these tag sets, and the sets."""
        if not tag_keys:
            return 0
        with _translate_errors("invalidate tags", self._client, self._breaker):
            if self._cluster is None:
                stamps = [stamp_key(tag_key) for tag_key in tag_keys]
                removed: int = await self._invalidate_tags(keys=[*tag_keys, *stamps])
                return removed
            return await self._invalidate_cluster_tags(self._cluster, tag_keys)

    async def _invalidate_cluster_tags(self, cluster: RedisCluster, tag_keys: Sequence[str]) -> int:
        """One script per slot that holds any set or stamp (a script cannot span slots)."""
        async with cluster.pipeline(transaction=False) as pipe:
            for tag_key in tag_keys:
                pipe.exists(tag_key, stamp_key(tag_key))
            found: list[int] = await pipe.execute()
        by_slot: dict[int, list[str]] = {}
        for tag_key, exists in zip(tag_keys, found, strict=True):
            if exists:
                by_slot.setdefault(key_slot(tag_key.encode()), []).append(tag_key)
        counts = await asyncio.gather(
            *(
                self._invalidate_tags(keys=[*keys, *map(stamp_key, keys)])
                for keys in by_slot.values()
            )
        )
        return sum(counts)

    async def close(self) -> None:
        """Stop batching reads; close the client if this object owns it."""
        if self._reads is not None:
            await self._reads.close()
        if self._owns_client:
            with _translate_errors("close", self._client):
                await self._client.aclose()


class RedisLockBackend:
    """`LockBackend` on Redis: `SET NX PX` with a random token in a script, Lua compare-and-delete.

    A token is 32 random hex digits, a colon, and the server's time when the lock was
    taken, in microseconds: the time `RedisStorage.set_if_locked` compares with the
    invalidations that came since.
    """

    def __init__(
        self,
        client: RedisClient,
        *,
        owns_client: bool = False,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        """Use `client` (closed on `close()` only if `owns_client`), behind `breaker`."""
        self._client = _check_client(client)
        self._owns_client = owns_client
        self._breaker = breaker
        self._cluster = client if isinstance(client, RedisCluster) else None
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)
        self._extend = client.register_script(_EXTEND)
        self._revoke = client.register_script(_REVOKE)
        self._cleanups = BackgroundTasks()
        start_over_after_fork(self)

    def start_over(self) -> object:
        """Start over in a forked child: the parent's lock clean-ups are its own."""
        inherited, self._cleanups = self._cleanups, BackgroundTasks()
        return inherited

    async def acquire(self, key: str, ttl: float) -> str | None:
        """Take the lock for `ttl` seconds; `None` if another owner holds it."""
        nonce = secrets.token_hex(16)
        try:
            with _translate_errors("SET NX (lock)", self._client, self._breaker_for(key)):
                token = await self._acquire(keys=[key], args=[nonce, _milliseconds(ttl)])
        except BackendUnavailableError:
            # Redis may have taken the lock and lost only its answer: nobody would know
            # the token, and the key would be locked until the lock expires.
            release = functools.partial(self._release_nonce, key, nonce)  # only this call's lock
            self._cleanups.start(keep_trying(release, ttl), name="atomcache-release")
            raise
        return None if token is None else _as_bytes(token).decode()  # type: ignore[union-attr]

    def _breaker_for(self, key: str) -> CircuitBreaker | None:
        return _node_breaker(self._cluster, self._breaker, key)

    async def _release_nonce(self, key: str, nonce: str) -> bool:
        """Release the lock if a token of `nonce` holds it (its answer was lost)."""
        with _translate_errors("release lock", self._client, self._breaker_for(key)):
            released: int = await self._release(keys=[key], args=[nonce, "prefix"])
        return released == 1

    async def release(self, key: str, token: str) -> bool:
        """Delete the lock only if `token` still owns it (revoked or not)."""
        with _translate_errors("release lock", self._client, self._breaker_for(key)):
            released: int = await self._release(keys=[key], args=[token, ""])
        return released == 1

    async def extend(self, key: str, token: str, ttl: float) -> bool:
        """Reset the lock's expiry only if `token` still owns it (revoked or not)."""
        milliseconds = _milliseconds(ttl)
        with _translate_errors("extend lock", self._client, self._breaker_for(key)):
            extended: int = await self._extend(keys=[key], args=[token, "", milliseconds])
        return extended == 1

    async def revoke(self, keys: Sequence[str]) -> int:
        """Revoke the computations holding these locks (see `LockBackend.revoke`)."""
        with _translate_errors("revoke locks", self._client, self._breaker):
            return await self._revoke_keys(keys)

    async def _revoke_keys(self, keys: Sequence[str | bytes]) -> int:
        if not keys:
            return 0
        if self._cluster is None:
            revoked: int = await self._revoke(keys=list(keys))
            return revoked
        counts = await asyncio.gather(*(self._revoke(keys=[key]) for key in keys))
        return sum(counts)

    async def revoke_matching(self, pattern: str) -> int:
        """Revoke every lock whose key matches the glob `pattern`, found with `SCAN`."""
        with _translate_errors("SCAN (locks)", self._client, self._breaker):
            return await _in_batches(self._client, pattern, self._revoke_keys)

    async def close(self) -> None:
        """Stop the clean-ups; close the client if this object owns it."""
        await self._cleanups.close()
        if self._owns_client:
            with _translate_errors("close", self._client):
                await self._client.aclose()


class _Channel:
    """The local subscribers of one Redis channel, and the connection it is subscribed on."""

    __slots__ = ("confirmed", "subscriber", "subscriptions")

    def __init__(self) -> None:
        self.subscriptions: set[QueueSubscription] = set()
        self.confirmed = asyncio.Event()
        self.subscriber: _Subscriber | None = None

    def deliver(self, event: Event) -> None:
        for subscription in self.subscriptions:
            subscription.deliver(event)


class _Subscriber:
    """One pub/sub connection (to the server, or to one cluster node) and its reader task."""

    __slots__ = ("__weakref__", "channels", "client", "lose", "name", "pubsub", "reader")

    def __init__(
        self,
        name: str,
        pubsub: PubSub,
        client: Redis | None,
        lose: Callable[[Iterable[str]], None],
    ) -> None:
        self.name = name
        self.pubsub = pubsub
        self.client = client  # the subscriber's own client, closed with it
        self.lose = lose
        self.channels: set[str] = set()
        self.reader: asyncio.Task[None] | None = None

    def reconnected(self, _connection: object) -> None:
        """redis-py re-established the connection and re-subscribed: events were lost."""
        self.lose(self.channels)

    async def close(self) -> None:
        if self.reader is not None and self.reader is not asyncio.current_task():
            await stop_tasks([self.reader])
        with contextlib.suppress(RedisError, OSError):
            await self.pubsub.aclose()  # type: ignore[no-untyped-call]
        if self.client is not None:
            with contextlib.suppress(RedisError, OSError):
                await self.client.aclose()


class RedisNotifier:
    """`Notifier` on Redis pub/sub, one shared subscriber connection per process.

    Every `subscribe(key)` in the process is multiplexed over a single pub/sub
    connection read by one background task: a key's channel is subscribed when its
    first local subscriber arrives and unsubscribed when its last one leaves.
    Entering `subscribe` waits for Redis to confirm the subscription (at most
    `confirm_timeout` seconds), so a read made afterwards cannot miss an event.

    On Redis Cluster the events use sharded pub/sub (`SSUBSCRIBE`/`SPUBLISH`, Redis 7
    and later, also Valkey) so each event stays on the shard that owns the key, with
    one subscriber connection per node holding subscribed channels; `sharded=False`
    (or a server older than 7) uses classic pub/sub on one node instead.

    If a connection drops, it is re-established (on a cluster: on the node that owns
    the channel now) and its channels re-subscribed. Events published meanwhile are
    lost, so every subscriber of those channels receives a local `"lost"` event and
    re-checks at once; waiters also re-check on their own interval.
    """

    def __init__(
        self,
        client: RedisClient,
        *,
        owns_client: bool = False,
        confirm_timeout: float = 1.0,
        breaker: CircuitBreaker | None = None,
        sharded: bool | None = None,
    ) -> None:
        """Use `client` for publishing and for the shared subscriber connection(s).

        `sharded`: use sharded pub/sub; `None` (default) decides by itself: on a
        cluster whose servers support it.
        """
        self._client = _check_client(client)
        self._cluster = client if isinstance(client, RedisCluster) else None
        self._sharded = sharded if self._cluster is not None else False
        self._owns_client = owns_client
        self._breaker = breaker
        self._confirm_timeout = confirm_timeout
        self._subscribers: dict[str, _Subscriber] = {}
        self._start_lock = asyncio.Lock()
        self._channels: dict[str, _Channel] = {}
        self._repairs = BackgroundTasks()
        start_over_after_fork(self)

    async def publish(self, key: str, event: Event) -> None:
        """Publish `event` on the channel `key`."""
        payload = f"{event.status}:{event.version}"
        if self._cluster is not None and await self._is_sharded():
            with _translate_errors(
                "SPUBLISH", self._client, _node_breaker(self._cluster, self._breaker, key)
            ):
                await self._cluster.spublish(key, payload)
            return
        with _translate_errors("PUBLISH", self._client, self._breaker):
            await self._client.publish(key, payload)

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
                await self._attach(key, channel)
            await within(channel.confirmed.wait(), self._confirm_timeout)
            yield subscription
        finally:
            channel.subscriptions.discard(subscription)
            if not channel.subscriptions and self._channels.get(key) is channel:
                del self._channels[key]
                await self._detach(key, channel)

    async def close(self) -> None:
        """Stop the readers, close the subscriber connections and, if owned, the client."""
        await self._repairs.close()
        subscribers, self._subscribers = list(self._subscribers.values()), {}
        for subscriber in subscribers:
            await subscriber.close()
        self._channels.clear()
        if self._owns_client:
            with _translate_errors("close", self._client):
                await self._client.aclose()

    @property
    def subscribed_channels(self) -> int:
        """Number of channels this process listens to now."""
        return len(self._channels)

    async def _is_sharded(self) -> bool:
        """Whether events use sharded pub/sub: asked of the server once."""
        if self._sharded is None:
            with _translate_errors("INFO server", self._client, self._breaker):
                info = await self._client.info("server")
            self._sharded = _version(info.get("redis_version")) >= (7, 0)
        return self._sharded

    def _connection_breaker(self, name: str) -> CircuitBreaker | None:
        """The breaker of a subscriber connection: its node's on a cluster."""
        if self._breaker is None or not name:
            return self._breaker
        return self._breaker.for_node(name)

    async def _attach(self, key: str, channel: _Channel) -> None:
        """Subscribe `key` on the connection that serves it."""
        subscriber = await self._subscriber_for(key)
        channel.subscriber = subscriber
        subscriber.channels.add(key)
        sharded = self._cluster is not None and await self._is_sharded()
        breaker = self._connection_breaker(subscriber.name)
        with _translate_errors("SSUBSCRIBE" if sharded else "SUBSCRIBE", self._client, breaker):
            if sharded:
                await subscriber.pubsub.ssubscribe(key)
            else:
                await subscriber.pubsub.subscribe(key)

    async def _detach(self, key: str, channel: _Channel) -> None:
        subscriber = channel.subscriber
        if subscriber is None or self._subscribers.get(subscriber.name) is not subscriber:
            return
        subscriber.channels.discard(key)
        with contextlib.suppress(RedisError, OSError):
            if self._cluster is not None and await self._is_sharded():
                await subscriber.pubsub.sunsubscribe(key)
            else:
                await subscriber.pubsub.unsubscribe(key)

    async def _subscriber_for(self, key: str) -> _Subscriber:
        """The connection for `key`'s channel, connected, with its reader running."""
        node: ClusterNode | None = None
        if self._cluster is not None:
            sharded = await self._is_sharded()
            node = self._cluster.get_node_from_key(key) if sharded else _any_primary(self._cluster)
        name = node.name if node is not None else ""
        subscriber = self._subscribers.get(name)
        if subscriber is not None:
            return subscriber
        async with self._start_lock:
            subscriber = self._subscribers.get(name)
            if subscriber is None:
                subscriber = await self._connect(name, node)
                self._subscribers[name] = subscriber
        return subscriber

    async def _connect(self, name: str, node: ClusterNode | None) -> _Subscriber:
        # Not a cluster when there is no node: self._client is a Redis client.
        client = _node_client(node) if node is not None else _pubsub_client(self._client)  # type: ignore[arg-type]
        pubsub = client.pubsub()
        subscriber = _Subscriber(name, pubsub, client, self._lose)
        try:
            with _translate_errors(
                "connect (pub/sub)", self._client, self._connection_breaker(name)
            ):
                await pubsub.connect()  # type: ignore[no-untyped-call]
        except BaseException:
            await subscriber.close()
            raise
        # redis-py reconnects a dropped connection by itself and re-subscribes its
        # channels: events published in between are lost, so say so.
        connection: Any = pubsub.connection
        connection.register_connect_callback(subscriber.reconnected)
        subscriber.reader = asyncio.create_task(self._read(subscriber), name="atomcache-notifier")
        return subscriber

    async def _read(self, subscriber: _Subscriber) -> None:
        """Dispatch messages from one connection until it is closed."""
        backoff = 0.05
        while True:
            try:
                message = await subscriber.pubsub.get_message(timeout=None)
            except (RedisError, OSError):
                # The connection dropped and redis-py's retries gave up: Redis is away.
                self._lose(subscriber.channels)
                if self._cluster is not None:
                    # A node's subscriber: re-subscribe its channels where they live now.
                    self._start_repair(subscriber)
                    return
                # The next read reconnects and re-subscribes; waiters re-check meanwhile.
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.05
            if message is not None:
                self._dispatch(subscriber, message)

    def _dispatch(self, subscriber: _Subscriber, message: dict[str, Any]) -> None:
        raw_channel = message.get("channel")
        if not isinstance(raw_channel, bytes):
            return
        key = raw_channel.decode(errors="replace")
        channel = self._channels.get(key)
        if channel is None:
            return
        kind = message.get("type")
        if kind in ("message", "smessage"):
            event = _parse_event(key, message.get("data"))
            if event is not None:
                channel.deliver(event)
        elif kind in ("subscribe", "ssubscribe"):
            channel.confirmed.set()
        elif kind == "sunsubscribe" and key in subscriber.channels:
            # The server dropped the subscription: the key's slot moved to another node.
            subscriber.channels.discard(key)
            channel.deliver(Event(key, "lost"))
            self._start_repair(None, [key])

    def _lose(self, keys: Iterable[str]) -> None:
        """Tell the subscribers of `keys` that events may have been missed."""
        for key in keys:
            channel = self._channels.get(key)
            if channel is not None:
                channel.deliver(Event(key, "lost"))

    def _start_repair(self, broken: _Subscriber | None, keys: Iterable[str] = ()) -> None:
        self._repairs.start(self._repair(broken, [*keys]), name="atomcache-resubscribe")

    async def _repair(self, broken: _Subscriber | None, keys: list[str]) -> None:
        """Re-subscribe channels of a lost cluster connection where their slots live now."""
        if broken is not None:
            if self._subscribers.get(broken.name) is broken:
                del self._subscribers[broken.name]
            keys.extend(broken.channels)
            await broken.close()
        backoff = 0.05
        while not await self._resubscribe(keys):
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)

    async def _resubscribe(self, keys: list[str]) -> bool:
        """Refresh the slot map and subscribe `keys` again; `False` to try again later."""
        cluster = self._cluster
        try:
            if cluster is not None:
                with _translate_errors("refresh cluster slots", self._client, self._breaker):
                    await cluster.nodes_manager.initialize()
            while keys:
                channel = self._channels.get(keys[-1])
                if channel is not None:
                    channel.confirmed.clear()
                    await self._attach(keys[-1], channel)
                    channel.deliver(Event(keys[-1], "lost"))
                keys.pop()
        except (AtomCacheError, RedisError, OSError):
            return False
        return True

    def start_over(self) -> object:
        """Start over in a forked child: no subscriber, no channel, no repair under way.

        The parent's subscriber connections and reader tasks run on its sockets and event
        loop: reused here, nothing would ever be delivered (no reader runs in the child),
        and the child's local tier would never serve. The child subscribes again on
        connections of its own. The parent's are set aside untouched: one garbage
        collected here would close its transport through the parent's event loop, whose
        epoll instance the child shares, and the parent would stop hearing from it.
        """
        inherited = (self._subscribers, self._channels, self._repairs)
        self._subscribers = {}
        self._channels = {}
        self._repairs = BackgroundTasks()
        self._start_lock = asyncio.Lock()
        return inherited


async def _in_batches(
    client: RedisClient, pattern: str, act: Callable[[list[bytes]], Awaitable[int]]
) -> int:
    """`act` on the keys matching the glob `pattern`, `_CLEAR_BATCH` at a time; the sum.

    The keys are found with `SCAN` (on every master of a cluster), never `KEYS`.
    """
    done = 0
    batch: list[bytes] = []
    async for key in client.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) >= _CLEAR_BATCH:
            done += await act(batch)
            batch = []
    return done + (await act(batch) if batch else 0)


#: How many calls `_in_turns` has under way at once: a cluster's pools are per node.
_AT_ONCE = 16


async def _in_turns(calls: Sequence[Callable[[], Awaitable[_T]]]) -> list[_T]:
    """Run the calls concurrently, `_AT_ONCE` at a time; their results in order."""
    results: list[_T] = []
    for start in range(0, len(calls), _AT_ONCE):
        results.extend(await asyncio.gather(*(call() for call in calls[start : start + _AT_ONCE])))
    return results


def _any_primary(cluster: RedisCluster) -> ClusterNode:
    """The node for classic pub/sub on a cluster: any node sees every `PUBLISH`."""
    return cluster.get_primaries()[0]


def _pubsub_client(client: Redis) -> Redis:
    """A client of its own, on `client`'s server, for the pub/sub connection.

    Its connections are made like `client`'s (same class and settings: TLS, a unix
    socket, a Sentinel-managed master all carry over) but outside `client`'s pool, so a
    subscriber never holds one of the connections that commands wait for: a pool of
    `max_connections=N` serves N commands at once, and pub/sub has one more.
    """
    from redis.asyncio import ConnectionPool, Redis  # noqa: PLC0415 - one server only

    pool = client.connection_pool
    own = ConnectionPool(connection_class=pool.connection_class, **pool.connection_kwargs)
    return Redis.from_pool(own)


def _node_client(node: ClusterNode) -> Redis:
    """A client of its own to one cluster node, for a pub/sub connection to it.

    No retries: a dropped connection must surface at once, to be re-subscribed on the
    node that owns the channel's slot now.
    """
    from redis.asyncio import Redis  # noqa: PLC0415 - only for clusters

    accepted = _REDIS_PARAMETERS.intersection(node.connection_kwargs)
    options = {name: node.connection_kwargs[name] for name in accepted}
    options["ssl"] = issubclass(node.connection_class, SSLConnection)
    options["retry"] = Retry(NoBackoff(), 0)
    return Redis(**options)


def _version(text: object) -> tuple[int, ...]:
    """`"7.0.15"` as `(7, 0, 15)`; `()` when unknown."""
    parts = str(text or "").split(".")
    return tuple(int(part) for part in parts if part.isdigit())


def _parse_event(key: str, data: object) -> Event | None:
    if not isinstance(data, bytes):
        return None
    status, _, version = data.decode(errors="replace").partition(":")
    if status not in EVENT_STATUSES or status == "lost":
        return None
    return Event(key, status, version)  # type: ignore[arg-type] # checked just above
