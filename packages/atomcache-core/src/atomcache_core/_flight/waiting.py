"""Waiting for another process's computation: what each notification leads to.

A waiter subscribes to its key's channel, looks (the stored value, else the lock if it
is free), then waits for an event. `WAITER_REACTIONS` says what it does next on each
event status, `ON_SILENCE` after `recheck_interval` without any; `wait` is the loop
that follows them until the value is found, the lock taken, or the deadline passed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from atomcache_core._flight.options import Outcome
from atomcache_core._telemetry import WAIT_DURATION

if TYPE_CHECKING:
    from atomcache_core._flight.context import FlightContext, FlightParts
    from atomcache_core._flight.options import FlightOptions, WaitPolicy
    from atomcache_core.protocols import EventStatus

__all__ = ["ON_SILENCE", "WAITER_REACTIONS", "Lead", "Reaction", "Skip", "Waited", "wait"]


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


@dataclass(frozen=True, slots=True)
class Lead:
    """The waiter took the lock (`token`): it computes; after silence, as a takeover."""

    token: str
    takeover: bool


class Skip:
    """The leader's result was not shareable: compute your own."""


#: How a wait ends: the value, the lock, told to compute alone, or `None` (timed out).
Waited: TypeAlias = Outcome | Lead | Skip | None


def _wakeup_of(waited: Waited) -> str:
    """How a wait ended, as the `wakeup` attribute of its duration says it."""
    if waited is None:
        return "timeout"
    if isinstance(waited, Skip):
        return "skipped"
    if isinstance(waited, Lead):
        return "lead"
    return {"notification": "notified", "recheck": "rechecked"}.get(waited.reason, "found")


async def wait(
    context: FlightContext,
    parts: FlightParts,
    key: str,
    lock_key: str,
    options: FlightOptions,
    *,
    policy: WaitPolicy,
) -> Waited:
    """Wait for another process's computation of `key`; `None` when the deadline passed.

    Reported (`atomcache_core.observability`) as a span and a duration, by how the
    wait ended.
    """
    async with context.telemetry.timed("wait", WAIT_DURATION, "wakeup") as ended:
        waited = await _Wait(context, parts, options, policy, lock_key).until_done(key)
        ended[0] = _wakeup_of(waited)
    return waited


@dataclass(frozen=True, slots=True)
class _Wait:
    """One wait: what it reads through, how long, and the lock it would take."""

    context: FlightContext
    parts: FlightParts
    options: FlightOptions
    policy: WaitPolicy
    lock_key: str

    async def until_done(self, key: str) -> Waited:
        """Follow the reactions to `key`'s events until the wait ends."""
        self.context.telemetry.wait()
        keys = self.context.keys_of(self.options)
        value_key, channel = keys.value(key), keys.channel(key)
        deadline = time.monotonic() + self.policy.timeout
        reaction, silent = Reaction(look=True), False
        async with self.parts.notifier.subscribe(channel) as subscription:
            while True:
                if reaction.skip:
                    return Skip()
                if reaction.look:
                    found = await self.look(value_key, reaction.woken_by, silent=silent)
                    if found is not None:
                        return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                event = await subscription.wait(min(self.policy.recheck_interval, remaining))
                # Silence for a whole interval: a lock taken now is a takeover.
                silent = event is None and remaining > self.policy.recheck_interval
                reaction = ON_SILENCE if event is None else WAITER_REACTIONS[event.status]

    async def look(self, value_key: str, woken_by: str, *, silent: bool) -> Outcome | Lead | None:
        """A waiter's look: the stored value, else the lock if it is free, else `None`."""
        context, options = self.context, self.options
        data = await self.parts.shared_storage.get(value_key)
        found = context.decode(data, options.serializer)
        if found is not None and options.is_fresh(found[0], time.time()):
            context.telemetry.woken(woken_by)
            return Outcome(found[1], "waited", found[0], reason=woken_by)
        token = await self.parts.lock.acquire(self.lock_key, self.policy.lock_ttl)
        return Lead(token, takeover=silent) if token is not None else None
