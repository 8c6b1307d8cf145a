"""The local tier: recent entries kept in process memory, in front of the shared storage.

A hit on the local tier never leaves the process. It stays correct across instances
because every write through any instance's tier announces the storage keys it changed
on the namespace's invalidation channel (the `Notifier`: Redis pub/sub), and every
tier drops them on receipt:

* a write or invalidation in one instance evicts the key from every other instance's
  local tier, within the pub/sub delivery time (a millisecond or two on a LAN);
* a read that races an invalidation never re-populates the old value: each read from
  the shared storage is marked stale if an invalidation of its key (or of everything)
  arrives before it completes, and a stale read is returned but not kept;
* when the invalidation channel drops, announcements may have been missed: the tier
  empties itself and serves nothing locally until a round trip of its own message on
  the channel proves that the subscription works again;
* entries are kept at most `ttl` seconds and never past their own freshness, so even
  an announcement that never arrives (a silently broken network) leaves a value stale
  for at most `ttl` seconds.

Only fresh entries are kept: stale-while-revalidate, waiting and locking always read
the shared storage (`Cache.shared_storage`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

from atomcache_core._background import start_over_after_fork, stop_tasks
from atomcache_core.backends._budget import DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES, Budget
from atomcache_core.entry import decode_entry
from atomcache_core.exceptions import AtomCacheError
from atomcache_core.protocols import Event

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from atomcache_core.protocols import Notifier, Storage, Subscription

__all__ = ["TieredStorage", "announce_change"]

logger = logging.getLogger("atomcache")

_PING_TIMEOUT = 1.0
_ANNOUNCE_LIMIT = 256  # writes of more keys announce "everything changed" instead
_ALL = "everything"


class _Read:
    """One read from the shared storage in flight; `valid` drops when its key changes."""

    __slots__ = ("valid",)

    def __init__(self) -> None:
        self.valid = True


class _ChannelLostError(Exception):
    """The invalidation channel may have missed announcements."""


class TieredStorage:
    """A `Storage` that answers hits from process memory and everything else from `shared`.

    Args:
        shared: The storage all instances share (e.g. `RedisStorage`).
        notifier: Carries the invalidation announcements between instances.
        channel: The namespace's invalidation channel (`KeyBuilder.invalidations`).
        ttl: The longest an entry is kept locally, in seconds.
        max_entries: At most this many entries are kept; the least recently used go.
        max_bytes: At most this many bytes are kept (each entry counted as its key,
            its bytes and `ENTRY_OVERHEAD`); the least recently used go, and an entry
            larger than this on its own is read from `shared` every time.

    Raises:
        ConfigurationError: `ttl`, `max_entries` or `max_bytes` is invalid.
    """

    def __init__(
        self,
        shared: Storage,
        notifier: Notifier,
        channel: str,
        *,
        ttl: float,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        """Put a local tier in front of `shared`."""
        self._budget = Budget(max_entries, max_bytes, prefix="local_")
        self.shared = shared
        self.ttl = ttl
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.hits = 0
        self._notifier = notifier
        self._channel = channel
        self._origin = secrets.token_hex(8)  # this tier's own announcements are skipped
        self._entries: OrderedDict[str, tuple[bytes, float, int]] = OrderedDict()
        self._reads: dict[str, list[_Read]] = {}
        self._serving = False
        self._listener: asyncio.Task[None] | None = None
        self._closed = False
        start_over_after_fork(self)

    @property
    def serving(self) -> bool:
        """Whether hits are answered locally now (the invalidation channel is live)."""
        return self._serving

    def __len__(self) -> int:
        """Number of entries held locally."""
        return len(self._entries)

    async def get(self, key: str) -> bytes | None:
        """The local copy when there is a fresh one, else the shared storage's bytes."""
        if self._serving:
            found = self._local(key, time.monotonic())
            if found is not None:
                return found
        elif self._listener is None:
            self._start()
        read = self._begin(key)
        try:
            data = await self.shared.get(key)
        finally:
            self._end(key, read)
        if data is not None and read.valid:
            self._keep(key, data)
        return data

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Each key's local copy, the others read from the shared storage in one call."""
        if self._listener is None:
            self._start()
        now = time.monotonic()
        found = [self._local(key, now) if self._serving else None for key in keys]
        missing = [key for key, data in zip(keys, found, strict=True) if data is None]
        if not missing:
            return found
        reads = [self._begin(key) for key in missing]
        try:
            fetched = iter(await self.shared.get_many(missing))
        finally:
            for key, read in zip(missing, reads, strict=True):
                self._end(key, read)
        results: list[bytes | None] = []
        pending = iter(zip(missing, reads, strict=True))
        for data in found:
            if data is not None:
                results.append(data)
                continue
            key, read = next(pending)
            value = next(fetched)
            if value is not None and read.valid:
                self._keep(key, value)
            results.append(value)
        return results

    async def set(self, key: str, value: bytes, ttl: float, tag_keys: Sequence[str] = ()) -> None:
        """Write through to the shared storage, then announce the change."""
        try:
            await self.shared.set(key, value, ttl, tag_keys)
        finally:
            await self._changed([key])

    async def add(self, key: str, value: bytes, ttl: float, tag_keys: Sequence[str] = ()) -> bool:
        """The shared storage's `add`; announced when it stored."""
        stored = await self.shared.add(key, value, ttl, tag_keys)
        if stored:
            await self._changed([key])
        return stored

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
        """The shared storage's fenced write; announced when it stored."""
        stored = await self.shared.set_if_locked(
            key, value, ttl, tag_keys, lock_key=lock_key, token=token
        )
        if stored:
            await self._changed([key])
        return stored

    async def track_tags(self, tag_keys: Sequence[str], *, token: str, ttl: float) -> None:
        """The shared storage's `track_tags`."""
        await self.shared.track_tags(tag_keys, token=token, ttl=ttl)

    async def set_many(self, items: Mapping[str, bytes], ttl: float) -> None:
        """Write every item through, then announce the changes."""
        try:
            await self.shared.set_many(items, ttl)
        finally:
            await self._changed(list(items))

    async def delete(self, key: str) -> bool:
        """Delete from the shared storage and every local tier."""
        try:
            return await self.shared.delete(key)
        finally:
            await self._changed([key])

    async def delete_many(self, keys: Sequence[str]) -> int:
        """Delete every key from the shared storage and every local tier."""
        try:
            return await self.shared.delete_many(keys)
        finally:
            await self._changed(keys)

    async def clear(self, prefix: str) -> int:
        """Clear the shared storage; every local tier is emptied."""
        try:
            return await self.shared.clear(prefix)
        finally:
            await self._changed(None)

    async def delete_matching(self, pattern: str) -> int:
        """Delete in the shared storage; every local tier is emptied."""
        try:
            return await self.shared.delete_matching(pattern)
        finally:
            await self._changed(None)

    async def invalidate_tags(self, tag_keys: Sequence[str]) -> int:
        """Invalidate in the shared storage; every local tier is emptied."""
        try:
            return await self.shared.invalidate_tags(tag_keys)
        finally:
            await self._changed(None)

    async def close(self) -> None:
        """Stop listening, forget the local entries, close the shared storage."""
        await self.stop()
        await self.shared.close()

    async def stop(self) -> None:
        """Stop listening and forget the local entries; the shared storage stays open."""
        self._closed = True  # from now on, reads go to the shared storage and nothing listens
        if self._listener is not None:
            await stop_tasks([self._listener])
            self._listener = None
        self._suspend()

    def _local(self, key: str, now: float) -> bytes | None:
        found = self._entries.get(key)
        if found is None:
            return None
        if found[1] <= now:
            self._forget(key)
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return found[0]

    def _keep(self, key: str, data: bytes) -> None:
        """Keep a fresh entry for at most `ttl` seconds and never past its freshness."""
        if not self._serving:
            return
        entry = decode_entry(data)
        if entry is None:
            return
        fresh_for = entry.fresh_until - time.time()
        if fresh_for <= 0:
            return
        budget = self._budget
        size = budget.size(key, data)
        if not budget.fits(size):
            return
        self._forget(key)
        self._entries[key] = (data, time.monotonic() + min(self.ttl, fresh_for), size)
        budget.held += size
        while budget.exceeded(len(self._entries)):
            self._forget(next(iter(self._entries)))

    @property
    def held_bytes(self) -> int:
        """Bytes held locally now, counted as `max_bytes` counts them."""
        return self._budget.held

    def _forget(self, key: str) -> None:
        """Drop one local entry, if held."""
        found = self._entries.pop(key, None)
        if found is not None:
            self._budget.held -= found[2]

    def _begin(self, key: str) -> _Read:
        read = _Read()
        self._reads.setdefault(key, []).append(read)
        return read

    def _end(self, key: str, read: _Read) -> None:
        pending = self._reads.get(key)
        if pending is not None:
            pending.remove(read)
            if not pending:
                del self._reads[key]

    def drop(self, keys: Iterable[str] | None) -> None:
        """Forget `keys` (`None`: everything) and spoil the reads of them in flight.

        The tier's own changes and announcements come here; so does a change this
        instance knows of that has not reached the shared storage yet.
        """
        if keys is None:
            self._entries.clear()
            self._budget.held = 0
            for pending in self._reads.values():
                for read in pending:
                    read.valid = False
            return
        for key in keys:
            self._forget(key)
            for read in self._reads.get(key, ()):
                read.valid = False

    async def _changed(self, keys: Sequence[str] | None) -> None:
        """Drop `keys` here and announce them to the other instances."""
        keys = _announced(keys)
        self.drop(keys)
        try:
            await announce_change(self._notifier, self._channel, keys, origin=self._origin)
        except AtomCacheError:
            logger.warning(
                "could not announce a change to the other instances' local tiers; "
                "they may serve the old value for up to local_ttl=%s s",
                self.ttl,
                exc_info=True,
            )

    def start_over(self) -> object:
        """Start over in a forked child: an origin of its own, nothing held, no listener.

        The parent's origin would make the child skip its siblings' announcements as
        its own (gunicorn `--preload`, `multiprocessing` with fork); its listener and
        entries belong to the parent's event loop and history.
        """
        inherited = self._listener
        self._origin = secrets.token_hex(8)
        self._serving = False
        self._listener = None
        self._reads.clear()
        self.drop(None)
        return inherited

    def _suspend(self) -> None:
        self._serving = False
        self.drop(None)

    def _start(self) -> None:
        if not self._closed:
            self._listener = asyncio.create_task(self._listen(), name="atomcache-local-tier")

    async def _listen(self) -> None:
        """Apply announcements; after any gap, empty the tier and prove the channel live.

        The tier serves only while this runs: however it ends (`close`, or cancelled with
        its event loop, as `asyncio.run` does when it returns), the tier empties itself
        and the next read starts a new listener.
        """
        backoff = 0.05
        try:
            while not self._closed:
                try:
                    async with self._notifier.subscribe(self._channel) as subscription:
                        await self._resume(subscription)
                        backoff = 0.05
                        await self._apply(subscription)
                except (AtomCacheError, _ChannelLostError):
                    logger.debug("local tier suspended: invalidation channel lost", exc_info=True)
                self._suspend()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
        finally:
            self._suspend()
            self._listener = None

    async def _resume(self, subscription: Subscription) -> None:
        """Serve again once a message of ours came back on the channel."""
        ping = {"ping": secrets.token_hex(8)}
        await _publish(self._notifier, self._channel, self._origin, ping)
        deadline = time.monotonic() + _PING_TIMEOUT
        while (remaining := deadline - time.monotonic()) > 0:
            event = await subscription.wait(remaining)
            if event is None or event.status == "lost":
                break
            if _parse(event) == (self._origin, ping):
                self.drop(None)
                self._serving = True
                return
            self._on_announcement(event)
        raise _ChannelLostError

    async def _apply(self, subscription: Subscription) -> None:
        while True:
            event = await subscription.wait(3600.0)
            if event is None:
                continue
            if event.status == "lost":
                raise _ChannelLostError
            self._on_announcement(event)

    def _on_announcement(self, event: Event) -> None:
        parsed = _parse(event)
        if parsed is None:  # not an announcement this version can read: be safe
            self.drop(None)
            return
        origin, payload = parsed
        if origin == self._origin or isinstance(payload, dict):  # ours, or a ping
            return
        if isinstance(payload, list):
            self.drop(key for key in payload if isinstance(key, str))
        else:
            self.drop(None)


async def announce_change(
    notifier: Notifier, channel: str, keys: Sequence[str] | None, *, origin: str | None = None
) -> None:
    """Tell every local tier listening on `channel` that `keys` changed in the shared storage.

    What a cache with a local tier announces after each of its writes; a program that
    changes entries without one (the `atomcache` command) calls it so that the running
    instances' tiers drop them too. Each tier drops `keys` (`None`, or more than 256
    keys: everything it holds) and spoils its reads of them in flight.

    Args:
        notifier: The notifier of the instances' server (`Cache.notifier`).
        channel: The namespace's invalidation channel (`KeyBuilder.invalidations`).
        keys: The storage keys changed (`KeyBuilder.value`); `None`: everything.
        origin: The announcing tier's own id, which it skips on receipt; default: a new
            one, for a process without a tier.

    Raises:
        BackendError: the announcement could not be published.
    """
    keys = _announced(keys)
    payload = _ALL if keys is None else list(keys)
    await _publish(notifier, channel, origin or secrets.token_hex(8), payload)


def _announced(keys: Sequence[str] | None) -> Sequence[str] | None:
    """What an announcement of `keys` names: themselves, or everything past `_ANNOUNCE_LIMIT`."""
    return None if keys is None or len(keys) > _ANNOUNCE_LIMIT else keys


async def _publish(
    notifier: Notifier, channel: str, origin: str, payload: list[str] | str | dict[str, str]
) -> None:
    """Publish one announcement: these keys, "everything", or a tier's ping.

    The message is `<origin>:<JSON>` (keys may hold any character); `_parse` reads it.
    """
    message = f"{origin}:{json.dumps(payload)}"
    await notifier.publish(channel, Event(channel, "invalidated", message))


def _parse(event: Event) -> tuple[str, object] | None:
    """The origin and payload of an announcement; `None` when it is not one."""
    origin, _, payload = event.version.partition(":")
    if event.status != "invalidated":
        return None
    try:
        return origin, json.loads(payload)
    except ValueError:
        return None
