"""The seams of atomcache: every backend implements these small Protocols.

`Cache` only talks to these four interfaces, so a new backend is a class with these
methods; no base class to inherit. Keys arrive fully built (namespace included, see
`atomcache_core.keys`): a backend stores them literally and never interprets them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from contextlib import AbstractAsyncContextManager

__all__ = [
    "EVENT_STATUSES",
    "Event",
    "EventStatus",
    "LockBackend",
    "Notifier",
    "Serializer",
    "Storage",
    "Subscription",
]

EventStatus = Literal["stored", "failed", "computing", "skipped", "invalidated", "lost"]
EVENT_STATUSES: frozenset[str] = frozenset(
    ("stored", "failed", "computing", "skipped", "invalidated", "lost")
)


@runtime_checkable
class Storage(Protocol):
    """Bytes in, bytes out, with a time to live.

    TTLs are seconds as floats; backends keep at least millisecond precision.
    """

    async def get(self, key: str) -> bytes | None:
        """Return the bytes stored under `key`, or `None` when absent, expired or invalidated.

        A value stored with tags is invalidated when one of its tags was invalidated
        after its computation began, and when the bookkeeping of one of its tags is gone
        (evicted): eviction never revives what `invalidate_tags` removed.
        """
        ...

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Return the bytes of each key, in order, `None` for each absent one."""
        ...

    async def set(self, key: str, value: bytes, ttl: float, tag_keys: Sequence[str] = ()) -> None:
        """Store `value` under `key` for `ttl` seconds and record it under each tag key."""
        ...

    async def set_many(self, items: Mapping[str, bytes], ttl: float) -> None:
        """Store every item for `ttl` seconds."""
        ...

    async def add(self, key: str, value: bytes, ttl: float, tag_keys: Sequence[str] = ()) -> bool:
        """Like `set`, only if nothing is stored under `key`: one atomic step.

        Return whether the value was stored (`False`: the key held a value, which is
        left as it was). Of concurrent calls for an absent key, exactly one stores.
        """
        ...

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
        """Like `set`, for the computation holding `lock_key` as `token`; release it too.

        This is the single-flight leader's fenced write, one atomic step with the lock
        of the `LockBackend` paired with this storage. It stores nothing (and returns
        `False`) when another owner holds the lock (the leader was overtaken), when the
        lock was revoked (`LockBackend.revoke`: the key was invalidated meanwhile), when
        a value newer than the computation is stored, or when one of `tag_keys` was
        invalidated after the computation began (the time the token was taken at). A
        lock that vanished (evicted or expired, and not taken since) is no newer owner:
        the other checks decide. Return whether the value was stored.
        """
        ...

    async def track_tags(self, tag_keys: Sequence[str], *, token: str, ttl: float) -> None:
        """Start the bookkeeping of `tag_keys` for the computation holding `token`.

        Called before the computation: an `invalidate_tags` of one of them from then on
        makes its `set_if_locked` store nothing. Kept at least `ttl` seconds.
        """
        ...

    async def delete(self, key: str) -> bool:
        """Remove `key`; return whether it existed."""
        ...

    async def delete_many(self, keys: Sequence[str]) -> int:
        """Remove every key; return how many existed."""
        ...

    async def clear(self, prefix: str) -> int:
        """Remove every key that starts with `prefix` (taken literally); return how many."""
        ...

    async def delete_matching(self, pattern: str) -> int:
        """Remove every key (value or tag set) matching `pattern`, a Redis glob; return how many.

        The glob is Redis's (`SCAN MATCH`): `*`, `?`, `[abc]`, `[^a]`, `[a-z]`, and a
        backslash escaping the next character (`atomcache_core.keys.glob_matcher`).
        """
        ...

    async def invalidate_tags(self, tag_keys: Sequence[str]) -> int:
        """Remove every key recorded under these tag keys and the tags; return how many keys."""
        ...

    async def close(self) -> None:
        """Release connections this object owns."""
        ...


@runtime_checkable
class LockBackend(Protocol):
    """Mutual exclusion with expiry: one owner per key, identified by a random token."""

    async def acquire(self, key: str, ttl: float) -> str | None:
        """Take the lock for `ttl` seconds; return the owner's token, or `None` if held."""
        ...

    async def release(self, key: str, token: str) -> bool:
        """Release the lock only if `token` still owns it (compare-and-delete)."""
        ...

    async def extend(self, key: str, token: str, ttl: float) -> bool:
        """Reset the lock's expiry to `ttl` seconds only if `token` still owns it."""
        ...

    async def revoke(self, keys: Sequence[str]) -> int:
        """Revoke the computations holding these locks: their key was invalidated.

        The owner keeps its lock (releases and extends it as before), but its fenced
        write (`Storage.set_if_locked`) stores nothing. Return how many were revoked.
        """
        ...

    async def revoke_matching(self, pattern: str) -> int:
        """`revoke` every held lock whose key matches the Redis glob `pattern`."""
        ...

    async def close(self) -> None:
        """Release connections this object owns."""
        ...


@dataclass(frozen=True, slots=True)
class Event:
    """A tiny notification about a key: never the value itself.

    Attributes:
        key: The channel key the event was published on.
        status: `"stored"` when a value was written, `"failed"` when its computation
            raised or could not be stored, `"computing"` as the leader's heartbeat,
            `"skipped"` when the result was not for sharing (waiters compute their own),
            `"invalidated"` on the namespace's invalidation channel when a storage key
            changed (local tiers drop it). `"lost"` is never published: a notifier
            delivers it to its own subscribers when events may have been missed (its
            connection dropped or was re-established), so they re-check at once.
        version: Identifies the computation (the leader's lock token), for tracing;
            for `"invalidated"`, the storage key that changed (`""`: all of them).
    """

    key: str
    status: EventStatus
    version: str = ""


class Subscription(Protocol):
    """The receiving end of one `Notifier.subscribe` call."""

    async def wait(self, timeout: float) -> Event | None:
        """Return the next event on the key, or `None` after `timeout` seconds."""
        ...


@runtime_checkable
class Notifier(Protocol):
    """Publish small events about keys and wait for them.

    Delivery is a hint, not a guarantee: callers re-check on a bounded interval.
    A subscription is active when `subscribe(...)` has been entered, so a caller that
    subscribes and *then* reads the key cannot miss an event published after the read.
    """

    async def publish(self, key: str, event: Event) -> None:
        """Send `event` to every subscriber of `key`, in every process."""
        ...

    def subscribe(self, key: str) -> AbstractAsyncContextManager[Subscription]:
        """Listen for events on `key` for the duration of the `async with` block."""
        ...

    async def close(self) -> None:
        """Stop listening and release connections this object owns."""
        ...


@runtime_checkable
class Serializer(Protocol):
    """Turns values into bytes and back."""

    def dumps(self, value: Any) -> bytes:
        """Encode `value`; raise `SerializationError` if it cannot be encoded."""
        ...

    def loads(self, data: bytes) -> Any:
        """Decode bytes made by `dumps`; raise `SerializationError` if they are invalid."""
        ...
