"""Refresh ahead: entries recomputed shortly before they expire, while the old one is served.

HTTP.md 7.4. Each process keeps one loop per entry it serves with `refresh_ahead`: the
loop sleeps until the entry has `lead_time` seconds of freshness left (a tenth of its
TTL, or 1.5 times its computation if longer), then
renews it by asking for it again with that margin (`fresh_margin`): the entry then
counts as expired for that one call, which takes the entry's single-flight lock,
fleet-wide, and recomputes it, or waits for the instance that does. Readers meanwhile
get the stored entry at once. So a fleet recomputes an entry once per expiry, however
many instances keep it warm.

An entry nobody has read in this process for `idle` seconds (5 times its TTL unless
told otherwise) is left to expire. The renewals themselves are not
reads. A process forked from one keeping entries warm starts with none: the parent's
loops run in the parent only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from atomcache_core._background import BackgroundTasks, start_over_after_fork

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["IDLE_TTLS", "RefreshAhead", "lead_time"]

logger = logging.getLogger("atomcache")

#: By default an entry is kept warm while it is read at least once per this many TTLs.
IDLE_TTLS = 5


def lead_time(ttl: float, compute_time: float = 0.0) -> float:
    """How long before expiry an entry is renewed, in seconds.

    A tenth of its TTL (at least 1 s, at most half of it), or 1.5 times its last
    computation when that is longer (so the renewal ends before the entry expires),
    at most 90% of the TTL.
    """
    base = min(max(1.0, ttl / 10), ttl / 2)
    return min(max(base, 1.5 * compute_time), 0.9 * ttl)


class _Warm:
    __slots__ = ("last_read",)

    def __init__(self) -> None:
        self.last_read = time.monotonic()


class RefreshAhead:
    """The refresh-ahead loops of one cache, stopped when it closes."""

    def __init__(self) -> None:
        """Keep nothing warm yet."""
        self._warm: dict[str, _Warm] = {}
        self._loops = BackgroundTasks()
        start_over_after_fork(self)

    def __len__(self) -> int:
        """Number of entries kept warm now."""
        return len(self._warm)

    def touch(
        self,
        key: str,
        renew: Callable[[float], Awaitable[float | None]],
        *,
        fresh_for: float,
        ttl: float,
        idle: float | None = None,
        compute_time: float = 0.0,
    ) -> None:
        """Note a read of `key` (`fresh_for` seconds left); keep it warm from now on.

        It stays warm until `idle` seconds pass without a read (`None`: `IDLE_TTLS`
        times `ttl`). `renew(margin)` asks for the entry again, counting it expired when it has less
        than `margin` seconds left; it returns the seconds of freshness left after,
        or `None` when nothing fresh is stored.
        """
        warm = self._warm.get(key)
        if warm is not None:
            warm.last_read = time.monotonic()
            return
        warm = self._warm[key] = _Warm()
        lead = lead_time(ttl, compute_time)
        idle = IDLE_TTLS * ttl if idle is None else idle
        loop = self._keep(key, warm, renew, fresh_for=fresh_for, ttl=ttl, lead=lead, idle=idle)
        self._loops.start(loop, "atomcache-refresh")

    async def close(self) -> None:
        """Stop every loop (a renewal under way is cancelled; its lock is released)."""
        await self._loops.close()
        self._warm.clear()

    def start_over(self) -> object:
        """Start over in a forked child: its reads start loops of its own.

        The parent's loops never run here: taken for the child's, they would keep its
        entries from being kept warm, and `close` would wait for them forever. They are
        kept, never run nor finalised.
        """
        inherited = (self._warm, self._loops)
        self._warm = {}
        self._loops = BackgroundTasks()
        return inherited

    async def _keep(
        self,
        key: str,
        warm: _Warm,
        renew: Callable[[float], Awaitable[float | None]],
        *,
        fresh_for: float,
        ttl: float,
        lead: float,
        idle: float,
    ) -> None:
        # The renewal counts the entry expired with less than this left: more than the
        # lead (the loop wakes a little late), less than a renewed entry's TTL.
        margin = lead + min(0.5, (ttl - lead) / 2)
        try:
            while True:
                await asyncio.sleep(max(0.0, fresh_for - lead))
                if time.monotonic() - warm.last_read > idle:
                    return
                left = await renew(margin)
                if left is None or left <= lead:  # not renewed: the next read starts again
                    return
                fresh_for = left
        except Exception:
            logger.exception("refresh ahead of %r failed; the entry expires as usual", key)
        finally:
            if self._warm.get(key) is warm:
                del self._warm[key]
