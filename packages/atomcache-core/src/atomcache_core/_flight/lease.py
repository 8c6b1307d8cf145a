"""The leader's side: a lease on one key's lock, and what it stores or abandons.

A `Lease` holds the lock while its value is computed (extending it and sending
"computing" heartbeats), then stores the value with a fenced write (`fulfil`) or
releases the lock (`skip`, `decline`, `fail`), and wakes the waiters either way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

from atomcache_core._flight.factory import call_factory, computing
from atomcache_core._flight.options import UNAVAILABLE, Outcome, Uncacheable
from atomcache_core._telemetry import warn_failed_open
from atomcache_core.entry import Entry, encode_entry
from atomcache_core.exceptions import AtomCacheError
from atomcache_core.protocols import Event

if TYPE_CHECKING:
    from collections.abc import Callable

    from atomcache_core._flight.context import FlightContext, FlightParts
    from atomcache_core._flight.options import FlightOptions
    from atomcache_core.protocols import EventStatus, Notifier

__all__ = ["Lease", "LeaseIssuer", "new_entry", "notify_waiters", "track_tags"]

logger = logging.getLogger("atomcache")


class LeaseIssuer(Protocol):
    """The single flight that grants leases, as its leases read it (`SingleFlight`).

    Attributes:
        context: What it reads of its cache.
        parts: The backends of its event loop.
        lock_ttl: Seconds a lock lives unless extended.
        heartbeat_interval: Seconds between two extensions of a lock (and "computing"
            events), read anew before each.
    """

    context: FlightContext
    parts: FlightParts
    lock_ttl: float
    heartbeat_interval: float

    def release_later(self, lock_key: str, token: str, channel: str, status: EventStatus) -> None:
        """Keep trying to release a lock Redis could not be asked to release, then notify."""


async def track_tags(
    flight: LeaseIssuer, key: str, token: str, options: FlightOptions
) -> tuple[str, ...]:
    """The tags of the computation `token` leads (calling `options.tags` once), tracked.

    From now on, an invalidation of one of them refuses its write; the lease keeps
    the tracking alive with the lock (`Lease._keep_alive`).

    Raises:
        AtomCacheError: the storage failed.
    """
    tags = tuple(options.tags() if callable(options.tags) else options.tags)
    if tags:
        tag_keys = flight.context.keys_of(options).tags(tags, key)
        await flight.parts.storage.track_tags(tag_keys, token=token, ttl=flight.lock_ttl)
    return tags


class Lease:
    """A leader's right to compute one key: it holds the lock, kept alive meanwhile.

    Created by `SingleFlight.claim` (or internally for `get_or_set`). Exactly one of
    `fulfil`, `skip` or `fail` must follow (`compute` calls one): each releases the
    lock and wakes waiters.
    """

    def __init__(
        self,
        flight: LeaseIssuer,
        key: str,
        token: str,
        options: FlightOptions,
        tags: tuple[str, ...],
    ) -> None:
        """Hold the lock `token` of `key`; extend it and send heartbeats until resolved.

        `tags` are the value's (`options.tags`, called once), tracked since the lock.
        """
        self.key = key
        self.options = options
        self.tags = tags
        self._flight = flight
        self._parts = flight.parts
        self._token = token
        self._keys = flight.context.keys_of(options)
        self._tag_keys = self._keys.tags(tags, key)
        self._lock_key = self._keys.lock(key)
        self._channel = self._keys.channel(key)
        self._started = time.monotonic()
        self._heartbeat = asyncio.create_task(self._keep_alive())
        self.resolved = False
        flight.context.telemetry.computation()

    async def compute(self, factory: Callable[[], Any], fallback: Outcome | None = None) -> Outcome:
        """Compute the value with `factory`, then store it or abandon the lease as it says.

        A failing computation fails the lease; its error is raised, unless it is an
        `Exception` and `fallback` (a stale value inside `stale_if_error`) is given: then
        that is returned.
        """
        telemetry = self._flight.context.telemetry
        try:
            async with computing(telemetry) as outcome:
                value = await call_factory(factory, self._keys.value(self.key))
                outcome[0] = "uncached" if isinstance(value, Uncacheable) else "stored"
        except BaseException as exc:
            await self.fail(exc)
            if not isinstance(exc, Exception):
                raise
            if fallback is None:
                raise
            logger.warning("refresh of %r failed; serving the stale value", self.key, exc_info=exc)
            telemetry.stale_hit()
            return fallback
        if isinstance(value, Uncacheable):
            await (self.decline() if value.declined else self.skip())
            return Outcome(value.value, "uncached", shareable=False, declined=value.declined)
        return await self.fulfil(value)

    async def fulfil(self, value: Any) -> Outcome:
        """Store `value` if the lock is still ours (fencing), then wake the waiters.

        Raises:
            SerializationError: `value` cannot be serialized; the lease is failed (so is
                it when the tags function raises, with its error).
        """
        context = self._flight.context
        options = self.options
        try:
            entry, _ = new_entry(
                context, value, options, time.monotonic() - self._started, self.tags
            )
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
            context.telemetry.error(type(exc).__name__)
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
        telemetry = self._flight.context.telemetry
        telemetry.error(type(error).__name__ if error is not None else "_OTHER")
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
    context: FlightContext,
    value: Any,
    options: FlightOptions,
    compute_time: float,
    tags: tuple[str, ...] | None = None,
) -> tuple[Entry, tuple[str, ...]]:
    """The entry that stores `value` now under `options`, and its tags (`tags` if given).

    Raises:
        SerializationError: `value` cannot be serialized (or the tags function's error).
    """
    payload = (options.serializer or context.serializer).dumps(value)
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
