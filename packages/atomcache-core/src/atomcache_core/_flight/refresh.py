"""Background refreshes: early (XFetch) and stale-while-revalidate.

A read that finds a fresh entry may start an early refresh (`refresh_early`); one that
serves a stale entry starts one. At most one refresh per key runs in a process, and only
the process that takes the key's lock computes it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from typing import TYPE_CHECKING, Any

from atomcache_core._background import keep_until_done
from atomcache_core._flight.lease import Lease, track_tags

if TYPE_CHECKING:
    from collections.abc import Callable

    from atomcache_core._flight.lease import LeaseIssuer
    from atomcache_core._flight.options import FlightOptions
    from atomcache_core.entry import Entry

__all__ = ["Refreshes", "refresh_early"]

logger = logging.getLogger("atomcache")


class Refreshes:
    """The background refreshes of one single flight, by value key."""

    def __init__(self, flight: LeaseIssuer, busy: Callable[[str], bool]) -> None:
        """Refresh through `flight`'s backends, under leases it grants.

        `busy` tells whether a value key is being computed in this process already (a
        fill under way): no refresh starts then.
        """
        self._flight = flight
        self._busy = busy
        self.running: dict[str, asyncio.Task[None]] = {}

    def start_over(self) -> object:
        """Forget the refreshes under way (a forked child's); return them, left untouched."""
        inherited, self.running = self.running, {}
        return inherited

    def start(
        self,
        key: str,
        value_key: str,
        factory: Callable[[], Any],
        options: FlightOptions,
        seen: float,
    ) -> None:
        """Start one refresh of `key` (stored at `value_key`), unless it is being computed.

        `seen` is when the entry read was created: a newer one needs no refresh.
        """
        if value_key not in self.running and not self._busy(value_key):
            refresh = asyncio.create_task(self._refresh(key, factory, options, seen))
            keep_until_done(self.running, value_key, refresh)

    async def _refresh(
        self, key: str, factory: Callable[[], Any], options: FlightOptions, seen: float
    ) -> None:
        """Recompute `key` if no other process is doing it; errors are logged."""
        flight = self._flight
        context, parts = flight.context, flight.parts
        keys = context.keys_of(options)
        lock_key = keys.lock(key)
        try:
            token = await parts.lock.acquire(lock_key, flight.lock_ttl)
            if token is None:
                return
            data = await parts.shared_storage.get(keys.value(key))
            found = context.decode(data, options.serializer)
            if found is not None and found[0].created_at > seen:
                await parts.lock.release(lock_key, token)
                return
            tags = await track_tags(flight, key, token, options)
            await Lease(flight, key, token, options, tags).compute(factory)
        except Exception:
            logger.exception("background refresh of %r failed; the stale value stays", key)


def refresh_early(entry: Entry, now: float, beta: float) -> bool:
    """XFetch (Vattani et al., VLDB 2015): refresh before expiry with rising probability.

    Recompute when `now - compute_time * beta * ln(U) >= fresh_until`, `U` uniform in
    (0, 1]: the longer a value takes to compute and the closer it is to expiring, the
    likelier one reader starts its refresh; `beta > 1` refreshes earlier.
    """
    if entry.compute_time <= 0:
        return False
    draw = 1.0 - random.random()  # noqa: S311 - not for security, uniform in (0, 1]
    return now - entry.compute_time * beta * math.log(draw) >= entry.fresh_until
