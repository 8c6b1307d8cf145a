"""Invalidations that could not reach the shared storage: kept, bounded, and replayed.

An application deletes or invalidates right after writing to its database. If Redis is
away at that moment (stopped, frozen, failing over), raising would turn a request whose
commit succeeded into an error, and forgetting would leave the old value to every
instance once Redis returns. So an invalidation that fails to reach Redis, or takes
longer than its deadline, is kept here instead (unless the caller asked for `strict`),
and:

* this instance's local tier dropped what it changes at once (`TieredStorage`);
* until it is replayed, this instance reads nothing from the shared storage that it
  may concern (the keys it names; everything, for tags, patterns and `clear`): as if it
  had been applied;
* it is replayed, in order, as soon as Redis answers again (retried with backoff; a
  circuit breaker that is open lets the first try through after its `reset_timeout`);
  the replay announces to the other instances' local tiers as the first try would have;
* at most `MAX_PENDING` keys are kept: past that, the pending invalidations become one
  `clear` of the namespace, which covers them all.

docs/reliability.md lists what each operation guarantees during an outage.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from atomcache_core._background import keep_trying, start_over_after_fork, stop_tasks, within
from atomcache_core.exceptions import BackendUnavailableError
from atomcache_core.keys import KeyBuilder, escape_glob

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from atomcache_core._parts import Parts
    from atomcache_core.protocols import Storage

__all__ = [
    "MAX_PENDING",
    "TAGS_AT_ONCE",
    "Invalidation",
    "PendingInvalidations",
    "ReadsAfterInvalidation",
    "apply_invalidation",
]

logger = logging.getLogger("atomcache")

#: The most keys kept waiting; past it, the pending invalidations become one `clear`.
MAX_PENDING = 10_000
#: Seconds the last replay may take when the cache closes.
CLOSING_REPLAY_TIMEOUT = 1.0
#: The most tags invalidated in one storage call (each is one set and one stamp per
#: bucket: 2,048 keys).
TAGS_AT_ONCE = 16

InvalidationKind = Literal["keys", "pattern", "clear", "tags"]


@dataclass(frozen=True, slots=True)
class Invalidation:
    """One call of `Cache.delete`, `delete_many`, `delete_pattern`, `clear` or `invalidate_tags`.

    Attributes:
        kind: What it removes: the entries of `names` (keys), those matching the glob
            `names[0]` (pattern), every entry (clear) or those tagged with `names` (tags).
        names: The keys, the pattern or the tags, as the caller gave them.
        version: The key version it applies to; `None`: the cache's (every version for
            `clear`).
        value_keys: The storage keys of `names` (kind "keys"): what reads skip until it
            is replayed.
    """

    kind: InvalidationKind
    names: tuple[str, ...] = ()
    version: int | None = None
    value_keys: frozenset[str] = frozenset()

    @property
    def size(self) -> int:
        """What it counts towards `MAX_PENDING`."""
        return max(1, len(self.names))

    @property
    def quick(self) -> bool:
        """Whether it is a few commands, held to the deadline as a whole.

        The others walk the keyspace (`clear`, `delete_pattern`: as long as the server
        holds keys) or many tags: the deadline is for Redis to answer at all; then
        each command has the client's own timeout.
        """
        return self.kind == "keys" or (self.kind == "tags" and len(self.names) <= TAGS_AT_ONCE)


class PendingInvalidations:
    """Runs invalidations with a deadline; keeps and replays those Redis did not take.

    Args:
        apply: Performs an invalidation on the shared storage; returns how many entries
            it removed.
        probe: One read of the shared storage: whether Redis answers at all.
        timeout: Seconds a quick invalidation may take (a long one: its probe) before
            it is kept for replay.
        blind: Called with `True` when invalidations start waiting (reads of what they
            concern must find nothing) and `False` once all are replayed.
    """

    def __init__(
        self,
        apply: Callable[[Invalidation], Awaitable[int]],
        *,
        probe: Callable[[], Awaitable[object]],
        timeout: float,
        blind: Callable[[bool], None],
    ) -> None:
        """Run invalidations with `apply`, at most `timeout` seconds each before keeping them."""
        self._apply = apply
        self._probe = probe
        self.timeout = timeout
        self._blind = blind
        self._pending: deque[Invalidation] = deque()
        self._size = 0
        #: The storage keys the waiting invalidations name; how many name everything.
        self._skipped: set[str] = set()
        self._everything = 0
        self._replay: asyncio.Task[bool] | None = None
        start_over_after_fork(self)

    def start_over(self) -> object:
        """Start over in a forked child: the parent replays what waits, not its children."""
        inherited = (self._pending, self._replay)
        self._pending, self._size, self._replay = deque(), 0, None
        self._skipped, self._everything = set(), 0
        self._blind(False)  # noqa: FBT003 - the one argument of the callback
        return inherited

    def __len__(self) -> int:
        """How many invalidations wait for Redis."""
        return len(self._pending)

    def skips(self, key: str) -> bool:
        """Whether a read of the storage key `key` must find nothing now."""
        return self._everything > 0 or key in self._skipped

    @property
    def skipped_keys(self) -> frozenset[str] | None:
        """The storage keys reads must not find now; `None`: every key."""
        return None if self._everything else frozenset(self._skipped)

    async def run(self, invalidation: Invalidation, *, strict: bool) -> int:
        """Apply `invalidation` now; if Redis does not take it in time, keep it.

        Returns how many entries it removed (0 when it was kept for later).

        Raises:
            BackendUnavailableError: Redis is away (or did not answer in time) and
                `strict` is set; nothing was kept.
            BackendError: Redis refused the invalidation (a permission, a full memory
                under `noeviction`): keeping it would not help.
        """
        try:
            return await self._attempt(invalidation)
        except BackendUnavailableError as exc:
            if strict:
                raise
            self._keep(invalidation, exc)
            return 0

    async def _attempt(self, invalidation: Invalidation) -> int:
        """Apply `invalidation`, a quick one within the deadline, a long one once Redis answers."""
        if invalidation.quick:
            done, removed = await within(self._apply(invalidation), self.timeout)
        else:
            done, _ = await within(self._probe(), self.timeout)
            removed = await self._apply(invalidation) if done else 0
        if not done:
            msg = (
                f"Redis did not take the invalidation ({invalidation.kind}) within "
                f"{self.timeout} s; check that Redis is running and answering"
            )
            raise BackendUnavailableError(msg)
        return removed or 0

    def _keep(self, invalidation: Invalidation, error: BackendUnavailableError) -> None:
        if self._size + invalidation.size > MAX_PENDING:
            logger.warning(
                "more than %d keys' invalidations wait for Redis: they become one clear "
                "of the namespace, replayed when Redis answers again",
                MAX_PENDING,
            )
            self._pending.clear()  # the same deque: a replay under way sees the change
            self._skipped.clear()
            self._size, self._everything = 0, 0
            invalidation = Invalidation("clear")
        self._pending.append(invalidation)
        self._size += invalidation.size
        if invalidation.kind == "keys":
            self._skipped.update(invalidation.value_keys)
        else:
            self._everything += 1
        logger.warning(
            "invalidation (%s) kept for replay: %s; until it is replayed, this instance "
            "reads nothing it concerns from Redis",
            invalidation.kind,
            error,
        )
        self._blind(True)  # noqa: FBT003 - the one argument of the callback
        self.resume()

    def resume(self) -> None:
        """Replay what waits in the running loop, unless a replay runs in a live loop.

        The replay of a loop that shut down (the end of an `asyncio.run`) was cancelled
        with it: the next loop to use the cache takes over.
        """
        replay = self._replay
        if not self._pending or (
            replay is not None and not replay.done() and not replay.get_loop().is_closed()
        ):
            return
        self._replay = asyncio.create_task(
            keep_trying(self._replay_all, math.inf), name="atomcache-replay"
        )

    async def _replay_all(self) -> None:
        """Apply the pending invalidations in order; raise at the first that fails."""
        while self._pending:
            invalidation = self._pending[0]
            await self._attempt(invalidation)
            if self._pending and self._pending[0] is invalidation:  # not folded meanwhile
                self._pending.popleft()
                self._size -= invalidation.size
                if invalidation.kind == "keys":
                    self._skipped.difference_update(invalidation.value_keys)
                else:
                    self._everything -= 1
            logger.info("invalidation (%s) replayed", invalidation.kind)
        self._size, self._everything = 0, 0
        self._skipped.clear()
        self._blind(False)  # noqa: FBT003 - the one argument of the callback

    async def close(self) -> None:
        """Stop replaying after a last try; say what is lost if it fails."""
        if self._replay is not None:
            await stop_tasks([self._replay])
        if not self._pending:
            return
        done, _ = await within(self._replay_all(), CLOSING_REPLAY_TIMEOUT)
        if not done or self._pending:
            logger.error(
                "closing with %d invalidations Redis never took: the entries they name "
                "stay in Redis until their TTL",
                len(self._pending),
            )


class ReadsAfterInvalidation:
    """A `Storage` whose reads skip what waiting invalidations concern (`skipped`).

    Put in place of the shared storage only while invalidations wait; everything
    else goes to `storage` as it is.
    """

    def __init__(self, storage: Storage, pending: PendingInvalidations) -> None:
        """Read `storage` as if `pending` had been applied."""
        self.storage = storage
        self._pending = pending

    async def get(self, key: str) -> bytes | None:
        """Nothing for a key a waiting invalidation concerns, else the storage's bytes."""
        return None if self._pending.skips(key) else await self.storage.get(key)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """`get` of each key."""
        found = await self.storage.get_many(keys)
        skips = self._pending.skips
        return [None if skips(key) else data for key, data in zip(keys, found, strict=True)]

    async def set(self, key: str, value: bytes, ttl: float, tag_keys: Sequence[str] = ()) -> None:
        """The storage's `set`."""
        await self.storage.set(key, value, ttl, tag_keys)

    async def set_many(self, items: Mapping[str, bytes], ttl: float) -> None:
        """The storage's `set_many`."""
        await self.storage.set_many(items, ttl)

    async def add(self, key: str, value: bytes, ttl: float, tag_keys: Sequence[str] = ()) -> bool:
        """The storage's `add`."""
        return await self.storage.add(key, value, ttl, tag_keys)

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
        """The storage's `set_if_locked`."""
        return await self.storage.set_if_locked(
            key, value, ttl, tag_keys, lock_key=lock_key, token=token
        )

    async def track_tags(self, tag_keys: Sequence[str], *, token: str, ttl: float) -> None:
        """The storage's `track_tags`."""
        await self.storage.track_tags(tag_keys, token=token, ttl=ttl)

    async def delete(self, key: str) -> bool:
        """The storage's `delete`."""
        return await self.storage.delete(key)

    async def delete_many(self, keys: Sequence[str]) -> int:
        """The storage's `delete_many`."""
        return await self.storage.delete_many(keys)

    async def clear(self, prefix: str) -> int:
        """The storage's `clear`."""
        return await self.storage.clear(prefix)

    async def delete_matching(self, pattern: str) -> int:
        """The storage's `delete_matching`."""
        return await self.storage.delete_matching(pattern)

    async def invalidate_tags(self, tag_keys: Sequence[str]) -> int:
        """The storage's `invalidate_tags`."""
        return await self.storage.invalidate_tags(tag_keys)

    async def close(self) -> None:
        """The storage's `close`."""
        await self.storage.close()


async def apply_invalidation(
    invalidation: Invalidation,
    here: Callable[[], Parts],
    keys_of: Callable[[int | None], KeyBuilder],
    namespace: str,
) -> int:
    """Perform an invalidation on the storage; how many entries it removed.

    `here` gives the parts of the running event loop (`Cache.storage` and `Cache.lock`);
    `keys_of` and `namespace` are the cache's. Locks first: a computation that writes
    between the two is refused, one that wrote before has its value removed.
    """
    names, version = invalidation.names, invalidation.version
    if invalidation.kind == "tags":
        builder = keys_of(version)
        removed = 0
        for start in range(0, len(names), TAGS_AT_ONCE):  # short scripts, one at a time
            chunk = names[start : start + TAGS_AT_ONCE]
            removed += await here().storage.invalidate_tags(
                [bucket for tag in chunk for bucket in builder.tag_buckets(tag)]
            )
        return removed
    if invalidation.kind == "keys":
        builder = keys_of(version)
        await here().lock.revoke([builder.lock(key) for key in names])
        if len(names) == 1:
            return int(await here().storage.delete(builder.value(names[0])))
        return await here().storage.delete_many([builder.value(key) for key in names])
    if invalidation.kind == "pattern":
        builder = keys_of(version)
        await here().lock.revoke_matching(f"{escape_glob(builder.lock_prefix)}{{???}}={names[0]}")
        prefix = escape_glob(builder.value_prefix)
        return await here().storage.delete_matching(f"{prefix}{{???}}={names[0]}")
    if version is not None:
        builder = keys_of(version)
        await here().lock.revoke_matching(escape_glob(builder.lock_prefix) + "*")
        removed = await here().storage.clear(builder.value_prefix)
        await here().storage.clear(builder.tag_prefix)
        return removed
    first = KeyBuilder(namespace)
    others = escape_glob(first.versions_prefix) + "*"
    await here().lock.revoke_matching(escape_glob(first.lock_prefix) + "*")
    await here().lock.revoke_matching(f"{others}:l:*")
    removed = await here().storage.clear(first.value_prefix)
    await here().storage.clear(first.tag_prefix)
    removed += await here().storage.delete_matching(f"{others}:v:*")
    await here().storage.delete_matching(f"{others}:t:*")
    return removed
