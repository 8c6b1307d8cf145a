"""The embedded in-memory backends: process-local, bounded, no server needed.

They are the default of `Cache()`: a script, a test or a single-process app gets
caching and in-process single flight without Redis. They are not shared between
processes; use the Redis backends for a fleet.

Every event loop and thread of the process shares them: writes, locks and
subscriptions change under a lock (a hit takes none), and an event reaches a subscriber
waiting in another thread's loop through that loop.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, NamedTuple

from atomcache_core._background import start_over_after_fork
from atomcache_core.backends._budget import DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES, Budget
from atomcache_core.backends._subscription import QueueSubscription
from atomcache_core.keys import glob_matcher

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping, Sequence

    from atomcache_core.protocols import Event

__all__ = ["MemoryLockBackend", "MemoryNotifier", "MemoryStorage"]

_MIN_SWEEP_INTERVAL = 64


class _Item(NamedTuple):
    value: bytes
    expires_at: float
    tag_keys: tuple[str, ...]
    size: int
    since: int  # when its computation began (microseconds, `_now`)


_last_now = 0
_clock = threading.Lock()


def _now() -> int:
    """Wall-clock microseconds, never less than the last: lock tokens', values', stamps'.

    Never going back, a clock stepped back (NTP, a VM resumed) cannot make every
    computation look older than the stamps and values written before the step; never
    the same twice, even in two threads.
    """
    global _last_now  # noqa: PLW0603 - the one clock of the process
    with _clock:
        _last_now = max(time.time_ns() // 1000, _last_now + 1)
        return _last_now


def _since(token: str) -> int | None:
    """The time a lock token was taken at (`MemoryLockBackend`), if it says."""
    _, colon, since = token.rpartition(":")
    return int(since) if colon and since.isdigit() else None


class MemoryStorage:
    """A bounded in-process `Storage`: least-recently-used eviction and TTL expiry.

    At most `max_entries` values and `max_bytes` bytes are kept (each value counted as
    its key, its bytes and `ENTRY_OVERHEAD`); storing past either bound evicts the
    least recently used values, and a value larger than `max_bytes` on its own is not
    kept (its `set` stores nothing, as if it had been evicted at once). Expired values
    are dropped when read and by a sweep that runs once as many writes as there were
    entries after the previous sweep (at least 64) have happened: amortised constant
    work per write.

    Args:
        max_entries: Most values kept (default 10,000).
        max_bytes: Most bytes kept (default 64 MiB).

    Raises:
        ConfigurationError: a bound is not a positive integer.
    """

    def __init__(
        self, max_entries: int = DEFAULT_MAX_ENTRIES, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        """Create an empty storage within these bounds."""
        self._budget = Budget(max_entries, max_bytes)
        self._data: OrderedDict[str, _Item] = OrderedDict()
        self._tags: dict[str, set[str]] = {}
        #: Per tag key of a computation under way (`track_tags`): when the tag was last
        #: invalidated (microseconds) and until when (monotonic) that is kept, as long
        #: as the computation's lock: computations begun before it store nothing.
        self._stamps: dict[str, tuple[int, float]] = {}
        self._locks: dict[str, tuple[str, float]] = {}
        self._writes_until_sweep = _MIN_SWEEP_INTERVAL
        #: Held by every change (of values, tags, stamps, and the paired locks'), so
        #: that threads change them one at a time; reads of a live value take none.
        self._mutex = threading.RLock()
        start_over_after_fork(self)

    def start_over(self) -> object:
        """In a forked child: the parent's locks and stamps are of its computations.

        They never end in the child, which would wait for them until they expire. The
        values stay: a child starts with a copy of what its parent held.
        """
        inherited = (dict(self._locks), self._stamps, self._mutex)
        self._locks.clear()  # the same table: the paired lock backend holds it too
        self._stamps = {}
        self._mutex = threading.RLock()  # a thread of the parent may have held it
        return inherited

    def __len__(self) -> int:
        """Number of values held, expired ones not yet swept included."""
        return len(self._data)

    @property
    def max_entries(self) -> int:
        """The most values kept."""
        return self._budget.max_entries

    @property
    def max_bytes(self) -> int:
        """The most bytes kept, as `held_bytes` counts them."""
        return self._budget.max_bytes

    @property
    def held_bytes(self) -> int:
        """Bytes held now: each value's key, bytes and `ENTRY_OVERHEAD`."""
        return self._budget.held

    async def get(self, key: str) -> bytes | None:
        """Return the value under `key`, or `None`."""
        return self._get(key, time.monotonic())

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Return the value of each key, `None` for each absent one."""
        now = time.monotonic()
        return [self._get(key, now) for key in keys]

    async def set(self, key: str, value: bytes, ttl: float, tag_keys: Sequence[str] = ()) -> None:
        """Store `value` for `ttl` seconds, recording it under each tag key."""
        with self._mutex:
            self._set(key, value, time.monotonic() + ttl, tuple(tag_keys), _now())

    async def set_many(self, items: Mapping[str, bytes], ttl: float) -> None:
        """Store every item for `ttl` seconds."""
        expires_at = time.monotonic() + ttl
        since = _now()
        with self._mutex:
            for key, value in items.items():
                self._set(key, value, expires_at, (), since)

    async def add(self, key: str, value: bytes, ttl: float, tag_keys: Sequence[str] = ()) -> bool:
        """Store `value` only if no live value is under `key`; return whether it was."""
        now = time.monotonic()
        with self._mutex:
            if self._get(key, now) is not None:
                return False
            self._set(key, value, now + ttl, tuple(tag_keys), _now())
            return True

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
        """Store and release the lock, as `Storage.set_if_locked` says, with the paired locks."""
        with self._mutex:
            now = time.monotonic()
            revoked = False
            if _owns(self._locks, lock_key, token, now):
                revoked = self._locks.pop(lock_key)[0] != token  # released either way
            elif lock_key in self._locks and self._locks[lock_key][1] > now:
                return False  # another owner; a lock gone or expired is no newer owner
            since = _since(token) or _now()
            current = self._data.get(key)
            if (
                revoked
                or (current is not None and current.expires_at > now and current.since >= since)
                or any(self._stamp(tag_key, now) >= since for tag_key in tag_keys)
            ):
                return False  # revoked, a newer value, or a tag invalidated since it began
            self._set(key, value, now + ttl, tuple(tag_keys), since)
            return True

    async def track_tags(self, tag_keys: Sequence[str], *, token: str, ttl: float) -> None:
        """Make the stamps of `tag_keys` exist, older than the computation of `token`."""
        now = time.monotonic()
        since = _since(token) or _now()
        with self._mutex:
            for tag_key in tag_keys:
                self._keep_stamp(tag_key, since - 1, now + ttl)

    async def delete(self, key: str) -> bool:
        """Remove `key`; return whether it held a live value."""
        with self._mutex:
            return self._pop(key, time.monotonic())

    async def delete_many(self, keys: Sequence[str]) -> int:
        """Remove every key; return how many held a live value."""
        now = time.monotonic()
        with self._mutex:
            return sum(self._pop(key, now) for key in keys)

    async def clear(self, prefix: str) -> int:
        """Remove values and tag sets whose key starts with `prefix`; return how many."""
        return self._remove_where(lambda key: key.startswith(prefix))

    async def delete_matching(self, pattern: str) -> int:
        """Remove the values and tag sets whose key matches the Redis glob `pattern`.

        Returns how many live values and tag sets went, as `clear` counts them.
        """
        return self._remove_where(glob_matcher(pattern))

    def _remove_where(self, matches: Callable[[str], bool]) -> int:
        """Remove the values and tag sets whose key `matches`: how many live ones went."""
        now = time.monotonic()
        with self._mutex:
            keys = list(self._data)  # at once: a read in another thread reorders them
            removed = sum(self._pop(key, now) for key in keys if matches(key))
            tag_keys = [key for key in self._tags if matches(key)]
            for tag_key in tag_keys:
                del self._tags[tag_key]
            for tag_key in [key for key in self._stamps if matches(key)]:
                del self._stamps[tag_key]
            return removed + len(tag_keys)

    async def invalidate_tags(self, tag_keys: Sequence[str]) -> int:
        """Remove every value recorded under these tags; return how many were live.

        The stamps of the tags move to now: a computation begun before stores nothing.
        """
        now = time.monotonic()
        stamp = _now()
        removed = 0
        with self._mutex:
            for tag_key in tag_keys:
                for key in self._tags.pop(tag_key, ()):
                    removed += self._pop(key, now)
                found = self._stamps.get(tag_key)
                if found is not None:
                    self._stamps[tag_key] = (stamp, found[1])
        return removed

    def _stamp(self, tag_key: str, now: float) -> int:
        """When `tag_key` was last invalidated (microseconds); -1 when never known."""
        found = self._stamps.get(tag_key)
        return found[0] if found is not None and found[1] > now else -1

    def _keep_stamp(self, tag_key: str, stamp: int, until: float) -> None:
        """Create the stamp of `tag_key` as `stamp` if absent; keep it at least `until`."""
        found = self._stamps.get(tag_key)
        if found is None or found[1] <= time.monotonic():
            self._stamps[tag_key] = (stamp, until)
        elif found[1] < until:
            self._stamps[tag_key] = (found[0], until)

    async def close(self) -> None:
        """Nothing to release; the data stays usable."""

    def _get(self, key: str, now: float) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        if item.expires_at <= now:
            with self._mutex:
                if self._data.get(key) is item:
                    self._pop(key, now)
            return None
        try:
            self._data.move_to_end(key)
        except KeyError:  # another thread removed it meanwhile
            return None
        return item.value

    def _set(
        self, key: str, value: bytes, expires_at: float, tag_keys: tuple[str, ...], since: int
    ) -> None:
        now = time.monotonic()
        self._pop(key, now)
        budget = self._budget
        size = budget.size(key, value)
        if not budget.fits(size):
            return
        self._data[key] = _Item(value, expires_at, tag_keys, size, since)
        budget.held += size
        for tag_key in tag_keys:
            self._tags.setdefault(tag_key, set()).add(key)
        while budget.exceeded(len(self._data)):
            # One call, not next(iter(...)): a read in another thread may reorder the
            # entries between two calls, and an iterator over them would then fail.
            self._forget(*self._data.popitem(last=False), now)
        self._writes_until_sweep -= 1
        if self._writes_until_sweep <= 0:
            self._sweep(now)

    def _pop(self, key: str, now: float) -> bool:
        """Remove `key` and its tag memberships; return whether it was live."""
        item = self._data.pop(key, None)
        return item is not None and self._forget(key, item, now)

    def _forget(self, key: str, item: _Item, now: float) -> bool:
        """Account for `item`, just removed from under `key`; return whether it was live."""
        self._budget.held -= item.size
        for tag_key in item.tag_keys:
            members = self._tags.get(tag_key)
            if members is not None:
                members.discard(key)
                if not members:
                    del self._tags[tag_key]
        return item.expires_at > now

    def _sweep(self, now: float) -> None:
        items = list(self._data.items())  # at once: a read in another thread reorders them
        for key in [k for k, item in items if item.expires_at <= now]:
            self._pop(key, now)
        for tag_key in [k for k, (_, until) in self._stamps.items() if until <= now]:
            del self._stamps[tag_key]
        self._writes_until_sweep = max(_MIN_SWEEP_INTERVAL, len(self._data))


def _owns(locks: dict[str, tuple[str, float]], key: str, token: str, now: float) -> bool:
    """Whether `token` holds the unexpired lock `key` (revoked or not)."""
    held = locks.get(key)
    return held is not None and held[0] in (token, token + "!") and held[1] > now


class MemoryLockBackend:
    """An in-process `LockBackend` with expiring, token-owned locks.

    Pass the `MemoryStorage` it works with, so that the storage's fenced writes
    (`set_if_locked`) see these locks; `Cache()` does this for you.
    """

    def __init__(self, storage: MemoryStorage | None = None) -> None:
        """Create a lock table, shared with `storage` when given."""
        self._locks: dict[str, tuple[str, float]] = (
            storage._locks if storage is not None else {}  # noqa: SLF001 - the paired storage's table
        )
        self._paired = storage
        self._own_mutex = threading.RLock()

    @property
    def _mutex(self) -> threading.RLock:
        """What changes of the table hold: the paired storage's (its fenced writes too)."""
        return self._own_mutex if self._paired is None else self._paired._mutex  # noqa: SLF001

    async def acquire(self, key: str, ttl: float) -> str | None:
        """Take the lock for `ttl` seconds unless a live owner holds it."""
        now = time.monotonic()
        with self._mutex:
            held = self._locks.get(key)
            if held is not None and held[1] > now:
                return None
            if len(self._locks) >= _MIN_SWEEP_INTERVAL and held is None:
                self._sweep(now)
            token = f"{secrets.token_hex(16)}:{_now()}"
            self._locks[key] = (token, now + ttl)
            return token

    async def release(self, key: str, token: str) -> bool:
        """Release the lock if `token` owns it and it has not expired."""
        with self._mutex:
            if not self._owns(key, token):
                return False
            del self._locks[key]
            return True

    async def extend(self, key: str, token: str, ttl: float) -> bool:
        """Push the lock's expiry to `ttl` seconds from now if `token` owns it."""
        with self._mutex:
            held = self._locks.get(key)
            if held is None or not self._owns(key, token):
                return False
            self._locks[key] = (held[0], time.monotonic() + ttl)
            return True

    async def revoke(self, keys: Sequence[str]) -> int:
        """Revoke the computations holding these locks (see `LockBackend.revoke`)."""
        now = time.monotonic()
        revoked = 0
        with self._mutex:
            for key in keys:
                held = self._locks.get(key)
                if held is not None and held[1] > now and not held[0].endswith("!"):
                    self._locks[key] = (held[0] + "!", held[1])
                    revoked += 1
        return revoked

    async def revoke_matching(self, pattern: str) -> int:
        """Revoke every lock whose key matches the Redis glob `pattern`."""
        matches = glob_matcher(pattern)
        with self._mutex:
            keys = [key for key in self._locks if matches(key)]
        return await self.revoke(keys)

    async def close(self) -> None:
        """Nothing to release."""

    def _owns(self, key: str, token: str) -> bool:
        return _owns(self._locks, key, token, time.monotonic())

    def _sweep(self, now: float) -> None:
        for key in [k for k, (_, expires_at) in self._locks.items() if expires_at <= now]:
            del self._locks[key]


class MemoryNotifier:
    """An in-process `Notifier`: events reach subscribers of the same process only.

    Subscribers may wait in any event loop of the process (`QueueSubscription.deliver`).
    """

    def __init__(self) -> None:
        """Create a notifier with no subscribers."""
        self._subscribers: dict[str, set[QueueSubscription]] = {}
        self._mutex = threading.Lock()

    async def publish(self, key: str, event: Event) -> None:
        """Deliver `event` to every current subscriber of `key`."""
        for subscription in tuple(self._subscribers.get(key, ())):  # at once: see subscribe
            subscription.deliver(event)

    @asynccontextmanager
    async def subscribe(self, key: str) -> AsyncIterator[QueueSubscription]:
        """Receive the events published on `key` while the block runs."""
        subscription = QueueSubscription()
        with self._mutex:  # a set emptied by another thread's last subscriber is gone
            self._subscribers.setdefault(key, set()).add(subscription)
        try:
            yield subscription
        finally:
            with self._mutex:
                subscribers = self._subscribers.get(key, set())
                subscribers.discard(subscription)
                if not subscribers:
                    self._subscribers.pop(key, None)

    async def close(self) -> None:
        """Drop every subscriber."""
        self._subscribers.clear()
