"""What a cache uses in one event loop: its backends as it reads them, and its own work.

`Cache` keeps one `Parts` per event loop (`PerLoop`): the backends' connections, the
local tier's listener, the computations shared in-process and the refresh-ahead loops
all belong to the loop they run in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

    from atomcache_core._flight.coordinator import SingleFlight
    from atomcache_core._refresh import RefreshAhead
    from atomcache_core.backends.redis import RedisClient
    from atomcache_core.backends.tiered import TieredStorage
    from atomcache_core.protocols import LockBackend, Notifier, Storage

__all__ = ["Parts"]


@dataclass(eq=False)
class Parts:
    """The parts of a cache in one event loop.

    Attributes:
        shared: The storage every instance shares (`RedisStorage`, `MemoryStorage`...).
        lock: The single-flight locks.
        notifier: The single-flight wake-ups, and the local tier's announcements.
        tier: The local tier (`local_ttl`) in front of `shared`, if any.
        refresher: The refresh-ahead loops.
        own: `shared`, `lock` and `notifier` were made for this loop alone, and close
            with it (`Cache.from_url`); else every loop shares them.
        clients: The redis-py clients opened for this loop, closed with it.
        storage: What the cache reads and writes through: `tier`, else `shared_storage`.
        shared_storage: `shared` as reads must see it: while invalidations wait for
            Redis, a `ReadsAfterInvalidation` that skips what they concern.
        single_flight: The coordination of `get_or_set` in this loop.
        loop: The event loop these parts belong to, once one took them.
    """

    shared: Storage
    lock: LockBackend
    notifier: Notifier
    tier: TieredStorage | None
    refresher: RefreshAhead
    own: bool = False
    clients: tuple[RedisClient, ...] = ()
    storage: Storage = field(init=False)
    shared_storage: Storage = field(init=False)
    single_flight: SingleFlight = field(init=False)
    loop: asyncio.AbstractEventLoop | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        """Read and write through the local tier, if any, else the shared storage."""
        self.read_through(self.shared)

    def read_through(self, reader: Storage) -> None:
        """Read the shared storage through `reader` from now on (`shared` itself, or not)."""
        self.shared_storage = reader
        if self.tier is not None:
            self.tier.shared = reader
            self.storage = self.tier
        else:
            self.storage = reader

    async def stop(self) -> None:
        """Stop the work under way: refresh-ahead loops, computations, retries."""
        await self.refresher.close()
        await self.single_flight.close()

    async def close(self) -> None:
        """Stop the work and the local tier; close the backends and clients of this loop."""
        await self.stop()
        if self.tier is not None:
            await self.tier.stop()
        if self.own:
            await self.shared.close()
            await self.lock.close()
            await self.notifier.close()
        for client in self.clients:
            await client.aclose()
