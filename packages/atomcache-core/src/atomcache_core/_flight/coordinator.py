"""The coordinator: one `SingleFlight` per cache and event loop.

It decides, per call, between a hit, a stale value, joining a fill under way in this
process, and a fill of its own (taking the lock, or waiting for whoever holds it); the
other modules of this package do the reading, waiting, computing and storing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any

from atomcache_core._background import (
    BackgroundTasks,
    keep_trying,
    keep_until_done,
    start_over_after_fork,
    stop_tasks,
)
from atomcache_core._flight.factory import check_not_computing, compute_unstored
from atomcache_core._flight.lease import Lease, new_entry, notify_waiters, track_tags
from atomcache_core._flight.options import UNAVAILABLE, Outcome, WaitPolicy
from atomcache_core._flight.reads import Reads, own
from atomcache_core._flight.refresh import Refreshes, refresh_early
from atomcache_core._flight.waiting import Lead, Skip, wait
from atomcache_core._telemetry import warn_failed_open
from atomcache_core.entry import encode_entry
from atomcache_core.exceptions import AtomCacheError, LockTimeoutError
from atomcache_core.protocols import Event

if TYPE_CHECKING:
    from collections.abc import Callable

    from atomcache_core._flight.context import FlightContext, FlightParts
    from atomcache_core._flight.options import FlightOptions, WaitTimeoutPolicy
    from atomcache_core.entry import Entry
    from atomcache_core.protocols import EventStatus

__all__ = ["SingleFlight"]

logger = logging.getLogger("atomcache")


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
        #: The storage reads, shared while under way, and the memo of decodings.
        self.reads = Reads(context, parts)
        self._fills: dict[str, asyncio.Task[Any]] = {}
        self._renewals: dict[str, asyncio.Task[Any]] = {}
        self._refreshes = Refreshes(self, busy=lambda value_key: value_key in self._fills)
        self._releases = BackgroundTasks()
        start_over_after_fork(self)

    def start_over(self) -> object:
        """Start over in a forked child: the parent's computations are not the child's.

        Joined in the child, a fill of the parent's event loop would raise, or never end.
        """
        inherited = (
            self._fills,
            self._renewals,
            self.reads.start_over(),
            self._refreshes.start_over(),
            self._releases,
        )
        self._fills, self._renewals = {}, {}
        self._releases = BackgroundTasks()
        return inherited

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
            self.context.keys_of(options).value(key),  # one loop per key and version
            renew,
            fresh_for=entry.fresh_until - time.time(),
            ttl=options.ttl,
            idle=options.refresh_idle,
            compute_time=entry.compute_time,
        )

    async def _get_or_set(
        self, key: str, factory: Callable[[], Any], options: FlightOptions
    ) -> Outcome:
        context = self.context
        value_key = context.keys_of(options).value(key)
        check_not_computing(key, value_key)
        fill = self._running_fill(value_key, options)
        if fill is not None:
            return await self._join(fill, key, factory, options)
        try:
            found, expired = await self._lookup(key, value_key, factory, options)
        except AtomCacheError as exc:
            warn_failed_open("cache read of %r failed; computing it", key, error=exc)
            context.telemetry.error(type(exc).__name__)
            found, expired = None, None
        if found is not None:
            return found
        context.telemetry.miss()
        if not options.store:
            return await compute_unstored(context.telemetry, factory, value_key)
        fallback = None
        if expired is not None and time.time() < expired[0].fresh_until + options.stale_if_error:
            fallback = Outcome(expired[1], "stale", expired[0])
        fill = self._running_fill(value_key, options)
        if fill is not None:
            return await self._join(fill, key, factory, options)
        fill = asyncio.create_task(self._fill(key, value_key, factory, options, fallback))
        keep_until_done(self._renewals if options.background else self._fills, value_key, fill)
        return own(await asyncio.shield(fill), options, context.serializer)

    def _running_fill(self, value_key: str, options: FlightOptions) -> asyncio.Task[Any] | None:
        """The computation of `value_key` under way here that this caller may share.

        Readers never share a background renewal (refresh ahead): the stored entry
        answers them meanwhile.
        """
        fill = self._fills.get(value_key)
        if fill is None and options.background:
            fill = self._renewals.get(value_key)
        return fill

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
            value_key = self.context.keys_of(options).value(key)
            return await compute_unstored(self.context.telemetry, factory, value_key)
        return own(outcome, options, self.context.serializer)

    async def store(self, key: str, value: Any, options: FlightOptions) -> Outcome:
        """Store `value` under `key` without holding its lock, then wake its waiters.

        For callers that compute outside single flight (a lock of their own, or none);
        the write is not fenced.

        Raises:
            SerializationError: `value` cannot be serialized; nothing is written.
            BackendError: the storage failed.
        """
        entry, tags = new_entry(self.context, value, options, 0.0)
        keys = self.context.keys_of(options)
        await self.parts.storage.set(
            keys.value(key), encode_entry(entry), options.storage_ttl, keys.tags(tags, key)
        )
        channel = keys.channel(key)
        await notify_waiters(self.parts.notifier, channel, Event(channel, "stored", ""))
        return Outcome(value, "computed", entry)

    async def peek(self, key: str, options: FlightOptions) -> Outcome | None:
        """Read `key` without computing: a fresh or stale-servable outcome, else `None`."""
        value_key = self.context.keys_of(options).value(key)
        found, _ = await self._lookup(key, value_key, None, options)
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
        telemetry = self.context.telemetry
        found = self.reads.decode(value_key, await self.reads.read(value_key), options)
        if found is None:
            return None, None
        entry, value = found
        now = time.time()
        if options.is_fresh(entry, now):
            telemetry.hit()
            if factory is not None and options.beta and refresh_early(entry, now, options.beta):
                self._refreshes.start(key, value_key, factory, options, entry.created_at)
            return Outcome(value, "hit", entry), None
        stale = options.stale_ttl > 0 and now < entry.fresh_until + options.stale_ttl
        if stale and entry.created_at >= options.fresh_after:
            telemetry.stale_hit()
            if factory is not None:
                self._refreshes.start(key, value_key, factory, options, entry.created_at)
            return Outcome(value, "stale", entry), None
        return None, found

    async def close(self) -> None:
        """Cancel fills and refreshes still running (their locks are released)."""
        refreshes = self._refreshes.running.values()
        await stop_tasks([*self._fills.values(), *self._renewals.values(), *refreshes])
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
        value_key = self.context.keys_of(options).value(key)
        found, _ = await self._lookup(key, value_key, None, options)
        if found is not None:
            return found
        self.context.telemetry.miss()
        won = await self._win(key, options)
        if won is None:
            self._check_wait_policy(key)
            return None
        return None if isinstance(won, Skip) else won

    async def _fill(
        self,
        key: str,
        value_key: str,
        factory: Callable[[], Any],
        options: FlightOptions,
        fallback: Outcome | None,
    ) -> Outcome:
        telemetry = self.context.telemetry
        try:
            won = await self._win(key, options)
        except AtomCacheError as exc:
            # Fail open: the backend is away. This fill is still shared in-process.
            warn_failed_open("cache unavailable for %r; computing without it", key, error=exc)
            telemetry.error(type(exc).__name__)
            return await compute_unstored(telemetry, factory, value_key, reason=UNAVAILABLE)
        if isinstance(won, Outcome):
            return won
        if isinstance(won, Skip):
            return await compute_unstored(telemetry, factory, value_key)
        if won is None:
            self._check_wait_policy(key)
            logger.warning("wait for %r timed out; computing it here without storing", key)
            return await compute_unstored(telemetry, factory, value_key)
        return await won.compute(factory, fallback)

    async def _win(self, key: str, options: FlightOptions) -> Outcome | Lease | Skip | None:
        """Take the lock, or wait for whoever holds it; `None` past the wait deadline."""
        context = self.context
        keys = context.keys_of(options)
        lock_key = keys.lock(key)
        token = await self.parts.lock.acquire(lock_key, self.lock_ttl)
        takeover = False
        if token is None:
            waited = await self._wait(key, lock_key, options)
            if not isinstance(waited, Lead):
                return waited
            token, takeover = waited.token, waited.takeover
        # A leader may have stored and released between our last read and our lock:
        # read again before computing, so the value is never computed twice.
        try:
            data = await self.parts.shared_storage.get(keys.value(key))
            found = context.decode(data, options.serializer)
            if found is not None and options.is_fresh(found[0], time.time()):
                await self.parts.lock.release(lock_key, token)
                return Outcome(found[1], "waited", found[0])
            tags = await track_tags(self, key, token, options)
        except AtomCacheError:  # the lock is ours: give it back once Redis answers again
            self.release_later(lock_key, token, keys.channel(key), "failed")
            raise
        except BaseException as exc:  # the tags function failed: so does the computation
            context.telemetry.error(type(exc).__name__)
            with contextlib.suppress(AtomCacheError):
                await self.parts.lock.release(lock_key, token)
            channel = keys.channel(key)
            await notify_waiters(self.parts.notifier, channel, Event(channel, "failed", token))
            raise
        if takeover:
            context.telemetry.lock_takeover()
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
        if isinstance(waited, Lead):
            return waited.token
        return waited if isinstance(waited, Outcome) else None

    async def _wait(
        self, key: str, lock_key: str, options: FlightOptions, policy: WaitPolicy | None = None
    ) -> Outcome | Lead | Skip | None:
        """Wait for another process's computation (`waiting.wait`), by default as configured."""
        policy = policy or WaitPolicy(self.wait_timeout, self.recheck_interval, self.lock_ttl)
        return await wait(self.context, self.parts, key, lock_key, options, policy=policy)

    def _check_wait_policy(self, key: str) -> None:
        if self.on_wait_timeout == "raise":
            msg = (
                f"gave up after waiting {self.wait_timeout} s for another process to compute "
                f"{key!r}; raise wait_timeout, or use on_wait_timeout='compute' to compute "
                "without storing instead"
            )
            raise LockTimeoutError(msg)
