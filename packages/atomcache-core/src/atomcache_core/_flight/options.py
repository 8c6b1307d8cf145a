"""What one single-flight call asks for, and what it gets back.

`FlightOptions` and `WaitPolicy` shape a call; `Outcome` is its answer, and
`Uncacheable` is how a factory says its result is for its own caller only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

    from atomcache_core.entry import Entry
    from atomcache_core.keys import KeyBuilder
    from atomcache_core.protocols import Serializer

__all__ = [
    "UNAVAILABLE",
    "FlightOptions",
    "Outcome",
    "OutcomeSource",
    "Uncacheable",
    "WaitPolicy",
    "WaitTimeoutPolicy",
]

WaitTimeoutPolicy = Literal["compute", "raise"]
UNAVAILABLE = "backend unavailable"

OutcomeSource = Literal["hit", "stale", "computed", "waited", "uncached"]


#: The type of the value an `Uncacheable` carries.
ValueT = TypeVar("ValueT")


@dataclass(frozen=True, slots=True)
class Uncacheable(Generic[ValueT]):
    """Wrap a factory's result to hand it to its own caller without storing it.

    Concurrent callers of the same key do not share it: each computes its own value,
    without waiting. Use it for results that depend on the caller or must not be kept.
    With `declined`, the result says nothing of the key at all (an HTTP request that the
    application refused before its handler): the other callers go on as if it had not
    been computed, one of them taking the lock to compute and store the value.
    """

    value: ValueT
    declined: bool = False


@dataclass(slots=True)  # not frozen: made on every hit, and frozen costs per field
class Outcome:
    """What a single-flight call returned, and where it came from.

    Attributes:
        value: The value.
        source: `"hit"` (a fresh entry), `"stale"` (an expired entry inside a stale
            window), `"computed"` (computed here and stored), `"waited"` (computed by
            another process and read), `"uncached"` (computed and not stored).
        entry: The entry the value was read from or stored as; `None` if not stored.
        reason: Why an `"uncached"` value was not stored, when it is not the
            factory's choice (e.g. `"backend unavailable"`); for a `"waited"` one, what
            ended the wait (`"notification"`, `"recheck"`, or empty: already stored).
        shareable: Whether callers that joined the computation may have the value;
            `False` for an `Uncacheable` result (each of them computes its own).
        declined: Callers that joined the computation start over: it was declined
            (`Uncacheable.declined`), or its value was not stored because the key was
            invalidated (or its lock taken over) while it ran.
        payload: The serialized value of a computation that was not stored (the
            backend failed, or the key was invalidated meanwhile).
    """

    value: Any
    source: OutcomeSource
    entry: Entry | None = None
    reason: str = ""
    shareable: bool = True
    declined: bool = False
    payload: bytes | None = None

    @property
    def encoded(self) -> bytes | None:
        """The value as the serializer wrote it (`payload`, else the entry's); `None` if never."""
        if self.payload is not None:
            return self.payload
        return self.entry.payload if self.entry is not None else None


@dataclass(slots=True)  # not frozen: made on every request, and frozen costs per field
class FlightOptions:
    """What one single-flight call asks for, validated by `Cache`.

    Attributes:
        ttl: Seconds a computed value stays fresh.
        tags: Tags to record the entry under, or a function giving them, called only
            when a value is stored (reads never pay for them).
        stale_ttl: Stale-while-revalidate window, seconds after expiry.
        stale_if_error: Window after expiry in which a failing computation serves stale.
        beta: XFetch early-refresh factor; 0 disables it.
        fresh_after: Entries created before this wall-clock time count as expired
            (a client's `no-cache` with a minimum refresh interval).
        refresh_ahead: Keep the entry warm: recompute it shortly before it expires
            (`RefreshAhead`, HTTP.md 7.4) while it is read.
        refresh_idle: Stop that after this many seconds without a read; `None`: 5 times
            `ttl` (`RefreshAhead.touch`).
        background: A refresh-ahead renewal: readers in this process never wait for
            it (they get the stored entry), where they would share a fill.
        fresh_margin: Entries with less than this many seconds of freshness left count
            as expired (an HTTP revalidation in an entry's last second renews it).
        store: Whether a computed value is written (`False`: computed per caller).
        serializer: Payload serializer; `None` means the cache's own.
        etag: Computes the ETag stored in the entry header from the value.
        reuse_decoded: Values are immutable: a decoding may be shared between reads.
        keys: The storage keys of the call's version (`Cache(version=...)`, `version=`);
            `None`: the cache's own.
    """

    ttl: float
    tags: tuple[str, ...] | Callable[[], tuple[str, ...]] = ()
    stale_ttl: float = 0.0
    stale_if_error: float = 0.0
    beta: float = 0.0
    fresh_after: float = 0.0
    fresh_margin: float = 0.0
    refresh_ahead: bool = False
    refresh_idle: float | None = None
    background: bool = False
    store: bool = True
    serializer: Serializer | None = None
    etag: Callable[[Any], str | None] | None = None
    reuse_decoded: bool = False
    keys: KeyBuilder | None = None

    def is_fresh(self, entry: Entry, now: float) -> bool:
        """Whether `entry` counts as fresh for this call."""
        return entry.is_fresh(now + self.fresh_margin) and entry.created_at >= self.fresh_after

    @property
    def storage_ttl(self) -> float:
        """How long storage keeps the entry: freshness plus the longest stale window."""
        return self.ttl + max(self.stale_ttl, self.stale_if_error)


@dataclass(frozen=True, slots=True)
class WaitPolicy:
    """How a waiter waits: seconds in all, between looks, and for a lock it takes."""

    timeout: float
    recheck_interval: float
    lock_ttl: float
