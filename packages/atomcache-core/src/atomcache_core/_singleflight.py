"""Single flight: one computation per cold key, in the process and across the fleet.

How a call of `Cache.get_or_set` proceeds (see DESIGN.md, "Single flight"):

1. A call for a key that this process is already filling joins that fill (one shared
   task per key, shielded so one caller's cancellation does not stop the others).
2. Otherwise it reads the entry: fresh -> returned (possibly with an early refresh,
   XFetch); expired but inside `stale_ttl` -> returned while one background refresh
   runs; else the process starts a fill.
3. A fill takes the lock (`SET NX PX`, random token). The leader re-reads the key
   (another leader may just have finished), computes, and stores with a fenced write
   that succeeds only while it still holds the lock, releasing it in the same step;
   then it publishes "stored". While it computes, it extends the lock and publishes
   a "computing" heartbeat every `heartbeat_interval`.
4. A process that does not get the lock subscribes to the key's channel first, then
   re-reads and retries the lock (so neither a "stored" nor a "failed" can slip by),
   then waits. "stored" -> re-read. "failed" -> re-read and try the lock: one of the
   waiting processes becomes the next leader. "computing" -> keep waiting without
   any command. Silence for `recheck_interval` -> re-read and try the lock: this
   covers lost notifications and crashed leaders (their lock expires).
5. Every wait ends by `wait_timeout`: then the caller computes without storing
   (`on_wait_timeout="compute"`, the default) or gets `LockTimeoutError` ("raise").

In the same process, callers that joined a failing fill get the factory's exception.

A factory may return `Uncacheable(value)`: its own caller gets `value`, nothing is
stored, and every other caller (joined in-process, or waiting in another process, woken
by a "skipped" event) computes its own value without waiting. HTTP adapters use this for
responses that must not be shared (errors, `Set-Cookie`, streaming, oversized bodies).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
import math
import random
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

from atomcache_core._background import (
    BackgroundTasks,
    keep_trying,
    start_over_after_fork,
    stop_tasks,
)
from atomcache_core._telemetry import COMPUTATION_DURATION, WAIT_DURATION, warn_failed_open
from atomcache_core.entry import Entry, decode_entry, encode_entry
from atomcache_core.exceptions import (
    AtomCacheError,
    ConfigurationError,
    LockTimeoutError,
    SerializationError,
)
from atomcache_core.protocols import Event, EventStatus

if TYPE_CHECKING:
    from collections.abc import Callable

    from atomcache_core._refresh import RefreshAhead
    from atomcache_core._telemetry import Telemetry
    from atomcache_core.keys import KeyBuilder
    from atomcache_core.protocols import LockBackend, Notifier, Serializer, Storage

__all__ = ["FlightOptions", "Lease", "Outcome", "SingleFlight", "Uncacheable", "WaitTimeoutPolicy"]

logger = logging.getLogger("atomcache")

WaitTimeoutPolicy = Literal["compute", "raise"]
_RETRY: Any = object()
UNAVAILABLE = "backend unavailable"
_REUSE_MAX_KEYS = 512
_REUSE_MAX_BYTES = 1024 * 1024
#: Most bytes of stored values the decoding memo holds on to (each decoded value is
#: about as large again): the memory a process uses beyond its storage's bounds.
REUSE_HELD_BYTES = 8 * 1024 * 1024


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
class _Lead:
    token: str
    takeover: bool


class _Skip:
    """The leader's result was not shareable: compute your own."""


#: The value keys whose factories are running in this context: a factory that asks for
#: one of them (itself, or through another key's factory) would wait for itself.
_COMPUTING: ContextVar[frozenset[str]] = ContextVar("atomcache_computing", default=frozenset())


async def call_factory(factory: Callable[[], Any], value_key: str = "") -> Any:
    """Call a zero-argument factory in the event loop; await what it returns, if awaitable.

    Nothing goes to a thread here: a factory that blocks says so, with
    `lambda: asyncio.to_thread(load)` (a plain `def` under `@cached` does that). While
    it runs, `value_key` counts as being computed in its context (`check_not_computing`).
    """
    token = _COMPUTING.set(_COMPUTING.get() | {value_key}) if value_key else None
    try:
        result = factory()
        while inspect.isawaitable(result):
            result = await result
        return result
    finally:
        if token is not None:
            _COMPUTING.reset(token)


@dataclass(frozen=True, slots=True)
class WaitPolicy:
    """How a waiter waits: seconds in all, between looks, and for a lock it takes."""

    timeout: float
    recheck_interval: float
    lock_ttl: float


@dataclass(frozen=True, slots=True)
class Reaction:
    """What a waiter does next on one event of the key it waits for.

    Attributes:
        look: Re-read the value, then try the lock if it is free.
        woken_by: What a value found by that look counts as (`stats.wakeups_notified`
            for `"notification"`, `stats.wakeups_rechecked` for `"recheck"`).
        skip: Stop waiting and compute without the lock: the leader's result was not
            for sharing.
    """

    look: bool
    woken_by: str = ""
    skip: bool = False


_NOTIFIED = Reaction(look=True, woken_by="notification")

#: What a waiter does on each event status: every status of `EventStatus` has its row
#: (`tests/core/test_single_flight.py` checks it). A "failed" computation may leave the
#: lock to this waiter; a "lost" subscription may have missed an event, so it looks as
#: after silence.
WAITER_REACTIONS: dict[EventStatus, Reaction] = {
    "stored": _NOTIFIED,
    "failed": _NOTIFIED,
    "invalidated": _NOTIFIED,
    "computing": Reaction(look=False),
    "skipped": Reaction(look=False, skip=True),
    "lost": Reaction(look=True, woken_by="recheck"),
}
#: What a waiter does after `recheck_interval` without any event.
ON_SILENCE = Reaction(look=True, woken_by="recheck")


def _wakeup_of(waited: Outcome | _Lead | _Skip | None) -> str:
    """How a wait ended, as the `wakeup` attribute of its duration says it."""
    if waited is None:
        return "timeout"
    if isinstance(waited, _Skip):
        return "skipped"
    if isinstance(waited, _Lead):
        return "lead"
    return {"notification": "notified", "recheck": "rechecked"}.get(waited.reason, "found")


def check_not_computing(key: str, value_key: str) -> None:
    """Refuse to wait for a key whose factory is the caller (directly or not).

    Raises:
        ConfigurationError: `key` is being computed by a factory this call comes from;
            waiting for it would hold its lock, fleet-wide, until the wait timed out.
    """
    if value_key in _COMPUTING.get():
        msg = (
            f"get_or_set({key!r}) was called by the factory computing {key!r} (directly or "
            f"through the factory of another key): it asked for {key!r} while computing it "
            "and would wait for itself; compute the value in the factory instead, or use "
            "another key"
        )
        raise ConfigurationError(msg)


@dataclass(frozen=True, slots=True)
class FlightContext:
    """What single flight reads of its cache besides its loop's backends (`FlightParts`).

    Attributes:
        keys: The storage keys of the cache's own version.
        serializer: Encodes values unless a call brings its own.
        telemetry: Counts and reports each event.
    """

    keys: KeyBuilder
    serializer: Serializer
    telemetry: Telemetry

    def decode(
        self, data: bytes | None, serializer: Serializer | None = None
    ) -> tuple[Entry, Any] | None:
        """Decode stored bytes into the entry and its value; `None` if absent or corrupt.

        Corrupt bytes (not an entry of this format version, or a payload the serializer
        rejects) are counted in `stats.corrupt`.
        """
        if data is None:
            return None
        entry = decode_entry(data)
        if entry is None:
            self.telemetry.corrupt()
            return None
        try:
            return entry, (serializer or self.serializer).loads(entry.payload)
        except SerializationError:
            self.telemetry.corrupt()
            return None


class FlightParts(Protocol):
    """What single flight reads and writes through: the backends of one event loop.

    `atomcache_core._parts.Parts` is one; single flight needs nothing else of it.
    """

    @property
    def storage(self) -> Storage:
        """Where values are read and written (the local tier, if any)."""

    @property
    def shared_storage(self) -> Storage:
        """The storage every instance shares, as reads must see it."""

    @property
    def lock(self) -> LockBackend:
        """The single-flight locks."""

    @property
    def notifier(self) -> Notifier:
        """The wake-ups of waiters."""

    @property
    def refresher(self) -> RefreshAhead:
        """The refresh-ahead loops."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop these parts belong to, once known."""


class SingleFlight:
    """The coordination behind `Cache.get_or_set`: one per `Cache` and event loop.

    It reads and writes through `parts`, those of its loop; its computations, shared
    reads and retries are tasks and futures of that loop.
    """

    def __init__(
        self,
        context: FlightContext,
        parts: FlightParts,
        *,
        lock_ttl: float,
        recheck_interval: float,
        wait_timeout: float,
        on_wait_timeout: WaitTimeoutPolicy,
        heartbeat_interval: float | None = None,
    ) -> None:
        """Coordinate fills for `context`'s cache through `parts`, with these timings (seconds)."""
        self.context = context
        self.parts = parts
        self.lock_ttl = lock_ttl
        self.recheck_interval = recheck_interval
        self.wait_timeout = wait_timeout
        self.on_wait_timeout = on_wait_timeout
        self.heartbeat_interval = heartbeat_interval or min(lock_ttl / 3, recheck_interval / 2)
        self._fills: dict[str, asyncio.Task[Any]] = {}
        self._renewals: dict[str, asyncio.Task[Any]] = {}
        self._reads: dict[str, asyncio.Future[Any]] = {}
        self._decoded: dict[str, tuple[bytes, tuple[Entry, Any]]] = {}
        self._decoded_bytes = 0
        self._refreshes: dict[str, asyncio.Task[None]] = {}
        self._releases = BackgroundTasks()
        start_over_after_fork(self)

    def start_over(self) -> object:
        """Start over in a forked child: the parent's computations are not the child's.

        Joined in the child, a fill of the parent's event loop would raise, or never end.
        """
        inherited = (self._fills, self._renewals, self._reads, self._refreshes, self._releases)
        self._fills, self._renewals, self._reads, self._refreshes = {}, {}, {}, {}
        self._releases = BackgroundTasks()
        return inherited

    def keys_of(self, options: FlightOptions) -> KeyBuilder:
        """The storage keys of a call: its version's (`options.keys`), else the cache's."""
        return options.keys or self.context.keys

    async def get_or_set(
        self, key: str, factory: Callable[[], Any], options: FlightOptions
    ) -> Outcome:
        """Return the value of `key`, computing it once fleet-wide when needed."""
        outcome = await self._get_or_set(key, factory, options)
        if options.refresh_ahead and not options.fresh_margin and outcome.entry is not None:
            self._keep_warm(key, factory, options, outcome.entry)
        return outcome

    def _keep_warm(
        self, key: str, factory: Callable[[], Any], options: FlightOptions, entry: Entry
    ) -> None:
        """Have the cache's `RefreshAhead` renew `key` before it expires (a read of it)."""

        async def renew(margin: float) -> float | None:
            renewing = dataclasses.replace(options, fresh_margin=margin, background=True)
            renewed = (await self._get_or_set(key, factory, renewing)).entry
            return renewed.fresh_until - time.time() if renewed is not None else None

        self.parts.refresher.touch(
            self.keys_of(options).value(key),  # one loop per key and version
            renew,
            fresh_for=entry.fresh_until - time.time(),
            ttl=options.ttl,
            idle=options.refresh_idle,
            compute_time=entry.compute_time,
        )

    async def _get_or_set(
        self, key: str, factory: Callable[[], Any], options: FlightOptions
    ) -> Outcome:
        cache = self.context
        value_key = self.keys_of(options).value(key)
        check_not_computing(key, value_key)
        fill = self._running_fill(value_key, options)
        if fill is not None:
            return await self._join(fill, key, factory, options)
        try:
            found, expired = await self._lookup(key, value_key, factory, options)
        except AtomCacheError as exc:
            warn_failed_open("cache read of %r failed; computing it", key, error=exc)
            cache.telemetry.error(type(exc).__name__)
            found, expired = None, None
        if found is not None:
            return found
        self._count_miss()
        if not options.store:
            return await self._compute_unstored(factory, value_key)
        fallback = None
        if expired is not None and time.time() < expired[0].fresh_until + options.stale_if_error:
            fallback = Outcome(expired[1], "stale", expired[0])
        fill = self._running_fill(value_key, options)
        if fill is not None:
            return await self._join(fill, key, factory, options)
        fill = asyncio.create_task(self._fill(key, value_key, factory, options, fallback))
        running = self._renewals if options.background else self._fills
        running[value_key] = fill
        fill.add_done_callback(lambda done: self._forget(running, value_key, done))
        return self._own(await asyncio.shield(fill), options)

    def _own(self, outcome: Outcome, options: FlightOptions) -> Outcome:
        """A shared computation's outcome, with a value of this caller's own.

        Every caller of a computation, the first included, gets what a hit would
        return: the value decoded from its serialized form (a tuple comes back as a
        list from JSON), one object per caller, so none sees another's changes. Not for
        immutable values (`options.reuse_decoded`) nor for one computed only for its
        caller (`Uncacheable`).

        Raises:
            SerializationError: a value computed without the backend cannot be
                serialized: refused as it is when the backend answers.
        """
        if options.reuse_decoded or not outcome.shareable:
            return outcome
        serializer = options.serializer or self.context.serializer
        encoded = outcome.encoded
        if encoded is None:  # computed without storing: the backend away, a wait over
            encoded = serializer.dumps(outcome.value)  # what could not be stored is refused
        try:
            value = serializer.loads(encoded)
        except SerializationError:
            return outcome  # a serializer that cannot read what it wrote: the value as is
        return dataclasses.replace(outcome, value=value)

    def _running_fill(self, value_key: str, options: FlightOptions) -> asyncio.Task[Any] | None:
        """The computation of `value_key` under way here that this caller may share.

        Readers never share a background renewal (refresh ahead): the stored entry
        answers them meanwhile.
        """
        fill = self._fills.get(value_key)
        if fill is None and options.background:
            fill = self._renewals.get(value_key)
        return fill

    async def store(self, key: str, value: Any, options: FlightOptions) -> Outcome:
        """Store `value` under `key` without holding its lock, then wake its waiters.

        For callers that compute outside single flight (a lock of their own, or none);
        the write is not fenced.

        Raises:
            SerializationError: `value` cannot be serialized; nothing is written.
            BackendError: the storage failed.
        """
        cache = self.context
        entry, tags = new_entry(cache, value, options, 0.0)
        keys = self.keys_of(options)
        await self.parts.storage.set(
            keys.value(key), encode_entry(entry), options.storage_ttl, keys.tags(tags, key)
        )
        channel = keys.channel(key)
        await notify_waiters(self.parts.notifier, channel, Event(channel, "stored", ""))
        return Outcome(value, "computed", entry)

    async def peek(self, key: str, options: FlightOptions) -> Outcome | None:
        """Read `key` without computing: a fresh or stale-servable outcome, else `None`."""
        found, _ = await self._lookup(key, self.keys_of(options).value(key), None, options)
        return found

    async def _lookup(
        self,
        key: str,
        value_key: str,
        factory: Callable[[], Any] | None,
        options: FlightOptions,
    ) -> tuple[Outcome | None, tuple[Entry, Any] | None]:
        """The servable outcome for `key`, else `None` and the expired entry, if any.

        `value_key` is where `key` is stored (`KeyBuilder.value`). With a `factory`,
        early and stale-while-revalidate refreshes are started.
        """
        cache = self.context
        found = self._decode(value_key, await self._read(value_key), options)
        if found is None:
            return None, None
        entry, value = found
        now = time.time()
        if options.is_fresh(entry, now):
            cache.telemetry.hit()
            if factory is not None and options.beta and _refresh_early(entry, now, options.beta):
                self._refresh(key, factory, options, entry.created_at)
            return Outcome(value, "hit", entry), None
        stale = options.stale_ttl > 0 and now < entry.fresh_until + options.stale_ttl
        if stale and entry.created_at >= options.fresh_after:
            cache.telemetry.stale_hit()
            if factory is not None:
                self._refresh(key, factory, options, entry.created_at)
            return Outcome(value, "stale", entry), None
        return None, found

    def _decode(
        self, value_key: str, data: bytes | None, options: FlightOptions
    ) -> tuple[Entry, Any] | None:
        """Decode stored bytes; immutable values are reused while the bytes are the same.

        With `options.reuse_decoded` (values that are never mutated, like stored HTTP
        responses), the last decoding of each key is kept: reading the same bytes again
        (the same object from memory, equal bytes from Redis) skips checksum and parsing.
        """
        if not options.reuse_decoded or data is None or len(data) > _REUSE_MAX_BYTES:
            return self.context.decode(data, options.serializer)
        memo = self._decoded.get(value_key)
        if memo is not None and (memo[0] is data or memo[0] == data):
            return memo[1]
        found = self.context.decode(data, options.serializer)
        if found is not None:
            held = self._decoded_bytes + len(data) - (len(memo[0]) if memo is not None else 0)
            if len(self._decoded) >= _REUSE_MAX_KEYS or held > REUSE_HELD_BYTES:
                self._decoded.clear()
                held = len(data)
            self._decoded[value_key] = (data, found)
            self._decoded_bytes = held
        return found

    async def _join(
        self,
        fill: asyncio.Task[Outcome],
        key: str,
        factory: Callable[[], Any],
        options: FlightOptions,
    ) -> Outcome:
        """Share another caller's fill; compute our own if its result is not shareable.

        A declined fill is as if there had been none: this caller starts over.
        """
        outcome = await asyncio.shield(fill)
        if outcome.declined:
            return await self._get_or_set(key, factory, options)
        if not outcome.shareable:
            return await self._compute_unstored(factory, self.keys_of(options).value(key))
        return self._own(outcome, options)

    async def _compute_unstored(
        self, factory: Callable[[], Any], value_key: str, reason: str = ""
    ) -> Outcome:
        self.context.telemetry.computation()
        async with self._computing() as outcome:
            value = await call_factory(factory, value_key)
            outcome[0] = "uncached"
        if isinstance(value, Uncacheable):
            return Outcome(value.value, "uncached", reason=reason, shareable=False)
        return Outcome(value, "uncached", reason=reason)

    async def _read(self, value_key: str) -> bytes | None:
        """Read `value_key`, sharing one storage read among concurrent callers."""
        while (pending := self._reads.get(value_key)) is not None:
            data = await asyncio.shield(pending)
            if data is not _RETRY:
                return data  # type: ignore[no-any-return]
        loop = self.parts.loop or asyncio.get_running_loop()  # known: no second look
        future = self._reads[value_key] = loop.create_future()
        try:
            data = await self.parts.storage.get(value_key)
        except asyncio.CancelledError:
            future.set_result(_RETRY)  # the others read for themselves
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here, even if nobody else was waiting
            raise
        else:
            future.set_result(data)
        finally:
            del self._reads[value_key]
        return data

    def _count_miss(self) -> None:
        """Count a read that found nothing usable (`stats.misses`, the `lookups` metric)."""
        cache = self.context
        cache.telemetry.miss()

    def _computing(self) -> contextlib.AbstractAsyncContextManager[list[str]]:
        """Report the computation run in the block: a span, and its duration by outcome.

        The block sets the outcome (`stored` or `uncached`) in the list it is given;
        left unset (the factory raised), it is `failed`.
        """
        return self.context.telemetry.timed("compute", COMPUTATION_DURATION, "outcome")

    async def close(self) -> None:
        """Cancel fills and refreshes still running (their locks are released)."""
        running = [*self._fills.values(), *self._renewals.values(), *self._refreshes.values()]
        await stop_tasks(running)
        await self._releases.close()

    def release_later(self, lock_key: str, token: str, channel: str, status: EventStatus) -> None:
        """Keep trying to release a lock Redis could not be asked to release, then notify.

        A leader that computed while Redis was unreachable (a failover) still holds its
        lock there: released as soon as Redis answers again, waiters take over at once
        instead of waiting for the lock to expire. Gives up once the lock has expired.
        """

        async def release() -> None:
            if await self.parts.lock.release(lock_key, token):
                await self.parts.notifier.publish(channel, Event(channel, status, token))

        self._releases.start(keep_trying(release, self.lock_ttl), name="atomcache-release")

    @staticmethod
    def _forget(tasks: dict[str, Any], key: str, done: asyncio.Task[Any]) -> None:
        if tasks.get(key) is done:
            del tasks[key]
        if not done.cancelled():
            done.exception()  # retrieved: the callers saw it through the shield

    async def claim(self, key: str, options: FlightOptions) -> Outcome | Lease | None:
        """Take the right to compute `key`, for callers that compute in their own frame.

        Returns the value when it is stored (or becomes stored while waiting), a
        `Lease` when this caller must compute it (then `fulfil`, `skip` or `fail` it,
        always), or `None` when it should compute without storing (the leader's
        result was not shareable, or the wait timed out with `on_wait_timeout` set to
        "compute").

        Raises:
            LockTimeoutError: the wait timed out and `on_wait_timeout` is "raise".
        """
        found, _ = await self._lookup(key, self.keys_of(options).value(key), None, options)
        if found is not None:
            return found
        self._count_miss()
        won = await self._win(key, options)
        if won is None:
            self._check_wait_policy(key)
            return None
        return None if isinstance(won, _Skip) else won

    async def _fill(
        self,
        key: str,
        value_key: str,
        factory: Callable[[], Any],
        options: FlightOptions,
        fallback: Outcome | None,
    ) -> Outcome:
        try:
            won = await self._win(key, options)
        except AtomCacheError as exc:
            # Fail open: the backend is away. This fill is still shared in-process.
            warn_failed_open("cache unavailable for %r; computing without it", key, error=exc)
            self.context.telemetry.error(type(exc).__name__)
            return await self._compute_unstored(factory, value_key, reason=UNAVAILABLE)
        if isinstance(won, Outcome):
            return won
        if isinstance(won, _Skip):
            return await self._compute_unstored(factory, value_key)
        if won is None:
            self._check_wait_policy(key)
            logger.warning("wait for %r timed out; computing it here without storing", key)
            return await self._compute_unstored(factory, value_key)
        return await self._lead(won, factory, fallback)

    async def _win(self, key: str, options: FlightOptions) -> Outcome | Lease | _Skip | None:
        """Take the lock, or wait for whoever holds it; `None` past the wait deadline."""
        cache = self.context
        keys = self.keys_of(options)
        lock_key = keys.lock(key)
        token = await self.parts.lock.acquire(lock_key, self.lock_ttl)
        takeover = False
        if token is None:
            waited = await self._wait(key, lock_key, options)
            if not isinstance(waited, _Lead):
                return waited
            token, takeover = waited.token, waited.takeover
        # A leader may have stored and released between our last read and our lock:
        # read again before computing, so the value is never computed twice.
        try:
            data = await self.parts.shared_storage.get(keys.value(key))
            found = cache.decode(data, options.serializer)
            if found is not None and options.is_fresh(found[0], time.time()):
                await self.parts.lock.release(lock_key, token)
                return Outcome(found[1], "waited", found[0])
            tags = await self._track(key, token, options)
        except AtomCacheError:  # the lock is ours: give it back once Redis answers again
            self.release_later(lock_key, token, keys.channel(key), "failed")
            raise
        except BaseException as exc:  # the tags function failed: so does the computation
            cache.telemetry.error(type(exc).__name__)
            with contextlib.suppress(AtomCacheError):
                await self.parts.lock.release(lock_key, token)
            channel = keys.channel(key)
            await notify_waiters(self.parts.notifier, channel, Event(channel, "failed", token))
            raise
        if takeover:
            cache.telemetry.lock_takeover()
        return Lease(self, key, token, options, tags)

    async def wait_or_take(
        self, key: str, lock_key: str, options: FlightOptions, policy: WaitPolicy
    ) -> Outcome | str | None:
        """Wait for `key`'s value, or take a lock of the caller's choosing once it is free.

        For callers that compute in their own frame under a lock of their own (one lock
        for several keys, held `policy.lock_ttl` seconds without heartbeats). Woken by
        `key`'s notifications, looking again every `policy.recheck_interval` seconds.

        Returns:
            The value's outcome once stored, the token of `lock_key` once this caller
            took it (it computes, stores and releases), or `None` after
            `policy.timeout` seconds (or when the leader's result was not for sharing).

        Raises:
            AtomCacheError: the storage or the lock backend failed.
        """
        waited = await self._wait(key, lock_key, options, policy)
        if isinstance(waited, _Lead):
            return waited.token
        return waited if isinstance(waited, Outcome) else None

    async def _wait(
        self, key: str, lock_key: str, options: FlightOptions, policy: WaitPolicy | None = None
    ) -> Outcome | _Lead | _Skip | None:
        """Wait for another process's computation; `None` when the deadline passed.

        Reported (`atomcache_core.observability`) as a span and a duration, by how the
        wait ended.
        """
        policy = policy or WaitPolicy(self.wait_timeout, self.recheck_interval, self.lock_ttl)
        async with self.context.telemetry.timed("wait", WAIT_DURATION, "wakeup") as ended:
            waited = await self._wait_for(key, lock_key, options, policy)
            ended[0] = _wakeup_of(waited)
        return waited

    async def _wait_for(
        self, key: str, lock_key: str, options: FlightOptions, policy: WaitPolicy
    ) -> Outcome | _Lead | _Skip | None:
        cache = self.context
        cache.telemetry.wait()
        keys = self.keys_of(options)
        value_key, channel = keys.value(key), keys.channel(key)
        deadline = time.monotonic() + policy.timeout
        reaction, silent = Reaction(look=True), False
        async with self.parts.notifier.subscribe(channel) as subscription:
            while True:
                if reaction.skip:
                    return _Skip()
                if reaction.look:
                    found = await self._check(
                        value_key, lock_key, options, reaction.woken_by, policy, silent=silent
                    )
                    if found is not None:
                        return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                event = await subscription.wait(min(policy.recheck_interval, remaining))
                # Silence for a whole interval: a lock taken now is a takeover.
                silent = event is None and remaining > policy.recheck_interval
                reaction = ON_SILENCE if event is None else WAITER_REACTIONS[event.status]

    async def _check(
        self,
        value_key: str,
        lock_key: str,
        options: FlightOptions,
        woken_by: str,
        policy: WaitPolicy,
        *,
        silent: bool,
    ) -> Outcome | _Lead | None:
        """A waiter's look: the stored value, else the lock if it is free, else `None`."""
        cache = self.context
        found = cache.decode(await self.parts.shared_storage.get(value_key), options.serializer)
        if found is not None and options.is_fresh(found[0], time.time()):
            cache.telemetry.woken(woken_by)
            return Outcome(found[1], "waited", found[0], reason=woken_by)
        token = await self.parts.lock.acquire(lock_key, policy.lock_ttl)
        return _Lead(token, takeover=silent) if token is not None else None

    async def _track(self, key: str, token: str, options: FlightOptions) -> tuple[str, ...]:
        """The tags of the computation `token` leads (calling `options.tags` once), tracked.

        From now on, an invalidation of one of them refuses its write; the lease keeps
        the tracking alive with the lock (`Lease._keep_alive`).

        Raises:
            AtomCacheError: the storage failed.
        """
        tags = tuple(options.tags() if callable(options.tags) else options.tags)
        if tags:
            tag_keys = self.keys_of(options).tags(tags, key)
            await self.parts.storage.track_tags(tag_keys, token=token, ttl=self.lock_ttl)
        return tags

    def _check_wait_policy(self, key: str) -> None:
        if self.on_wait_timeout == "raise":
            msg = (
                f"gave up after waiting {self.wait_timeout} s for another process to compute "
                f"{key!r}; raise wait_timeout, or use on_wait_timeout='compute' to compute "
                "without storing instead"
            )
            raise LockTimeoutError(msg)

    async def _lead(
        self, lease: Lease, factory: Callable[[], Any], fallback: Outcome | None
    ) -> Outcome:
        cache = self.context
        try:
            async with self._computing() as outcome:
                keys = self.keys_of(lease.options)
                value = await call_factory(factory, keys.value(lease.key))
                outcome[0] = "uncached" if isinstance(value, Uncacheable) else "stored"
        except BaseException as exc:
            await lease.fail(exc)
            if not isinstance(exc, Exception):
                raise
            if fallback is None:
                raise
            logger.warning("refresh of %r failed; serving the stale value", lease.key, exc_info=exc)
            cache.telemetry.stale_hit()
            return fallback
        if isinstance(value, Uncacheable):
            await (lease.decline() if value.declined else lease.skip())
            return Outcome(value.value, "uncached", shareable=False, declined=value.declined)
        return await lease.fulfil(value)

    def _refresh(
        self, key: str, factory: Callable[[], Any], options: FlightOptions, seen: float
    ) -> None:
        """Start one background refresh of `key` in this process, if none is running."""
        value_key = self.keys_of(options).value(key)
        if value_key in self._refreshes or value_key in self._fills:
            return
        task = asyncio.create_task(self._refresh_now(key, factory, options, seen))
        self._refreshes[value_key] = task
        task.add_done_callback(lambda done: self._forget(self._refreshes, value_key, done))

    async def _refresh_now(
        self, key: str, factory: Callable[[], Any], options: FlightOptions, seen: float
    ) -> None:
        """Recompute `key` if no other process is doing it; errors are logged."""
        cache = self.context
        keys = self.keys_of(options)
        lock_key = keys.lock(key)
        try:
            token = await self.parts.lock.acquire(lock_key, self.lock_ttl)
            if token is None:
                return
            found = cache.decode(
                await self.parts.shared_storage.get(keys.value(key)), options.serializer
            )
            if found is not None and found[0].created_at > seen:
                await self.parts.lock.release(lock_key, token)
                return
            tags = await self._track(key, token, options)
            await self._lead(Lease(self, key, token, options, tags), factory, None)
        except Exception:
            logger.exception("background refresh of %r failed; the stale value stays", key)


class Lease:
    """A leader's right to compute one key: it holds the lock, kept alive meanwhile.

    Created by `SingleFlight.claim` (or internally for `get_or_set`). Exactly one of
    `fulfil`, `skip` or `fail` must follow: each releases the lock and wakes waiters.
    """

    def __init__(
        self,
        flight: SingleFlight,
        key: str,
        token: str,
        options: FlightOptions,
        tags: tuple[str, ...],
    ) -> None:
        """Hold the lock `token` of `key`; extend it and send heartbeats until resolved.

        `tags` are the value's (`options.tags`, called once), tracked since the lock.
        """
        cache = flight.context
        self.key = key
        self.options = options
        self.tags = tags
        self._flight = flight
        self._parts = flight.parts
        self._token = token
        self._keys = flight.keys_of(options)
        self._tag_keys = self._keys.tags(tags, key)
        self._lock_key = self._keys.lock(key)
        self._channel = self._keys.channel(key)
        self._started = time.monotonic()
        self._heartbeat = asyncio.create_task(self._keep_alive())
        self.resolved = False
        cache.telemetry.computation()

    async def fulfil(self, value: Any) -> Outcome:
        """Store `value` if the lock is still ours (fencing), then wake the waiters.

        Raises:
            SerializationError: `value` cannot be serialized; the lease is failed (so is
                it when the tags function raises, with its error).
        """
        cache = self._flight.context
        options = self.options
        try:
            entry, _ = new_entry(cache, value, options, time.monotonic() - self._started, self.tags)
        except BaseException:
            await self.fail()
            raise
        self._resolve()
        try:
            stored = await self._parts.storage.set_if_locked(
                self._keys.value(self.key),
                encode_entry(entry),
                options.storage_ttl,
                self._tag_keys,
                lock_key=self._lock_key,
                token=self._token,
            )
        except AtomCacheError as exc:
            warn_failed_open("could not store %r; returning it unstored", self.key, error=exc)
            cache.telemetry.error(type(exc).__name__)
            self._flight.release_later(self._lock_key, self._token, self._channel, "failed")
            return Outcome(value, "uncached", reason=UNAVAILABLE, payload=entry.payload)
        status: EventStatus = "stored" if stored else "failed"
        if not stored:
            logger.info(
                "%r was invalidated, or another leader took its lock, while it was computed: "
                "its value goes to its own caller only and is not stored",
                self.key,
            )
        await notify_waiters(
            self._parts.notifier, self._channel, Event(self._channel, status, self._token)
        )
        if stored:
            return Outcome(value, "computed", entry)
        # Callers that joined may have asked after the invalidation: they start over.
        return Outcome(
            value, "uncached", reason="invalidated", declined=True, payload=entry.payload
        )

    async def skip(self) -> None:
        """Store nothing: the result was not for sharing; waiters compute their own."""
        await self._abandon("skipped")

    async def decline(self) -> None:
        """Store nothing: the computation said nothing of the key; a waiter takes over."""
        await self._abandon("failed")

    async def fail(self, error: BaseException | None = None) -> None:
        """Store nothing: the computation failed (with `error`); a waiter may take over."""
        cache = self._flight.context
        cache.telemetry.error(type(error).__name__ if error is not None else "_OTHER")
        await self._abandon("failed")

    def _resolve(self) -> None:
        self.resolved = True
        self._heartbeat.cancel()

    async def _keep_alive(self) -> None:
        """Extend the lock and tell waiters the leader is alive, until resolved."""
        flight = self._flight
        while True:
            await asyncio.sleep(flight.heartbeat_interval)
            try:
                if not await self._parts.lock.extend(self._lock_key, self._token, flight.lock_ttl):
                    return
                if self._tag_keys:  # the tags' tracking lives as long as the lock
                    await self._parts.storage.track_tags(
                        self._tag_keys, token=self._token, ttl=flight.lock_ttl
                    )
                event = Event(self._channel, "computing", self._token)
                await self._parts.notifier.publish(self._channel, event)
            except AtomCacheError as exc:
                warn_failed_open(
                    "could not extend the lock %r; retrying", self._lock_key, error=exc
                )

    async def _abandon(self, status: EventStatus) -> None:
        """Release the lock and wake the waiters."""
        self._resolve()
        try:
            await self._parts.lock.release(self._lock_key, self._token)
        except AtomCacheError as exc:
            warn_failed_open("could not release %r; trying again", self._lock_key, error=exc)
            self._flight.release_later(self._lock_key, self._token, self._channel, status)
            return
        await notify_waiters(
            self._parts.notifier, self._channel, Event(self._channel, status, self._token)
        )


async def notify_waiters(notifier: Notifier, channel: str, event: Event) -> None:
    """Publish `event` to the waiters of `channel`; a failure is logged, not raised.

    Waiters that miss it find the value (or the free lock) at their next re-check.
    """
    try:
        await notifier.publish(channel, event)
    except AtomCacheError as exc:
        warn_failed_open("could not notify the waiters on %r", channel, error=exc)


def new_entry(
    cache: FlightContext,
    value: Any,
    options: FlightOptions,
    compute_time: float,
    tags: tuple[str, ...] | None = None,
) -> tuple[Entry, tuple[str, ...]]:
    """The entry that stores `value` now under `options`, and its tags (`tags` if given).

    Raises:
        SerializationError: `value` cannot be serialized (or the tags function's error).
    """
    payload = (options.serializer or cache.serializer).dumps(value)
    if tags is None:
        tags = options.tags() if callable(options.tags) else options.tags
    now = time.time()
    entry = Entry(
        payload,
        created_at=now,
        fresh_until=now + options.ttl,
        stale_until=now + options.storage_ttl,
        compute_time=compute_time,
        etag=options.etag(value) if options.etag is not None else None,
    )
    return entry, tuple(tags)


def _refresh_early(entry: Entry, now: float, beta: float) -> bool:
    """XFetch (Vattani et al., VLDB 2015): refresh before expiry with rising probability.

    Recompute when `now - compute_time * beta * ln(U) >= fresh_until`, `U` uniform in
    (0, 1]: the longer a value takes to compute and the closer it is to expiring, the
    likelier one reader starts its refresh; `beta > 1` refreshes earlier.
    """
    if entry.compute_time <= 0:
        return False
    draw = 1.0 - random.random()  # noqa: S311 - not for security, uniform in (0, 1]
    return now - entry.compute_time * beta * math.log(draw) >= entry.fresh_until
