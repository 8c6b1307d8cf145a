"""`RedisStorage`, and the wrapping a stored value carries (`_Wrapped`).

The stored form of a value: a NUL byte, ``S<since>:<n>:`` then, n times,
``<length>:<stamp key>``, then the value's bytes. `since` is when the value's
computation began (the lock's time, else the write's), in microseconds of the server's
clock; the stamp keys (`keys.stamp_key`) are those of the value's tags. A value is
live while every stamp exists and is older than `since`. Values without the prefix
(written before stamps existed) are live as they are. The scripts read it with the
functions of `wrap.lua`, `_Wrapped` in Python.
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING

from redis.asyncio import RedisCluster
from redis.crc import key_slot

from atomcache_core.backends._pipelining import ReadBatcher
from atomcache_core.backends.redis.batches import in_batches, in_turns
from atomcache_core.backends.redis.clients import as_bytes, as_milliseconds, check_client
from atomcache_core.backends.redis.errors import node_breaker, translate_errors
from atomcache_core.backends.redis.scripts import INVALIDATE_TAGS, SET, TRACK
from atomcache_core.keys import escape_glob, stamp_key

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from atomcache_core.backends.redis.clients import RedisClient
    from atomcache_core.breaker import CircuitBreaker

__all__ = ["RedisStorage"]

#: How many values' tag stamps `RedisStorage` remembers (`_remember`).
_STAMPS_KEPT = 10_000


def _hash_tag(key: str) -> str:
    """The part of `key` Redis Cluster hashes: its first non-empty `{...}`, else all of it."""
    start = key.find("{")
    end = key.find("}", start + 1) if start >= 0 else -1
    return key[start + 1 : end] if end > start + 1 else key


class _Wrapped:
    """A stored value's wrapping (see the module): when its computation began, its tags' stamps."""

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
        self._client = check_client(client)
        self._cluster = client if isinstance(client, RedisCluster) else None
        self._owns_client = owns_client
        self._breaker = breaker
        self._set = client.register_script(SET)
        self._track = client.register_script(TRACK)
        self._invalidate_tags = client.register_script(INVALIDATE_TAGS)
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
        breaker = node_breaker(self._cluster, self._breaker, key)
        stamps = self._stamps_of.get(key)
        if not stamps:
            with translate_errors("GET", self._client, breaker):
                value = as_bytes(await self._client.get(key))
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
        with translate_errors("MGET", self._client, breaker):
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
            _Wrapped.of(as_bytes(value), key) for key, value in zip(keys, values, strict=True)
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
            with translate_errors("MGET (tag stamps)", self._client, breaker):
                known.update(zip(missing, await self._read_many(missing), strict=True))
        results: list[bytes | None] = []
        for key, value, found in zip(keys, values, wrapped, strict=True):
            if found is None:
                results.append(as_bytes(value))
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
        return [as_bytes(value) for value in found]

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
        milliseconds = as_milliseconds(ttl)
        breaker = node_breaker(self._cluster, self._breaker, key)
        with translate_errors("SET NX" if only_new else "SET", self._client, breaker):
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
        milliseconds = as_milliseconds(ttl)
        with translate_errors(
            "SET (fenced)", self._client, node_breaker(self._cluster, self._breaker, key)
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
        milliseconds = as_milliseconds(ttl)
        with translate_errors(
            "track tags", self._client, node_breaker(self._cluster, self._breaker, tag_keys[0])
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
            await in_turns([functools.partial(store, key, value) for key, value in items.items()])
            return
        milliseconds = as_milliseconds(ttl)
        with translate_errors("SET (pipeline)", self._client, self._breaker):
            async with self._client.pipeline(transaction=False) as pipe:
                for key, value in items.items():  # queued; redis-py loads the script if needed
                    args = [value, milliseconds, ""]
                    await self._set(keys=[key, key], args=args, client=pipe)  # type: ignore[arg-type]
                await pipe.execute()

    async def delete(self, key: str) -> bool:
        """Remove `key`; return whether it existed."""
        with translate_errors(
            "UNLINK", self._client, node_breaker(self._cluster, self._breaker, key)
        ):
            removed: int = await self._client.unlink(key)
        return removed > 0

    async def delete_many(self, keys: Sequence[str]) -> int:
        """Remove every key; return how many existed."""
        if not keys:
            return 0
        with translate_errors("UNLINK", self._client, self._breaker):
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

        with translate_errors("SCAN/UNLINK", self._client, self._breaker):
            return await in_batches(self._client, pattern, unlink)

    async def invalidate_tags(self, tag_keys: Sequence[str]) -> int:
        """Remove every key recorded in these tag sets, and the sets."""
        if not tag_keys:
            return 0
        with translate_errors("invalidate tags", self._client, self._breaker):
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
            with translate_errors("close", self._client):
                await self._client.aclose()
