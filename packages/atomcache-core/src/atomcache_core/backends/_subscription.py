"""The subscription object shared by the notifier implementations."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from atomcache_core._background import within

if TYPE_CHECKING:
    from atomcache_core.protocols import Event


class QueueSubscription:
    """Buffers the events delivered to one subscriber until it waits for them."""

    __slots__ = ("_loop", "_queue")

    def __init__(self) -> None:
        """Create a subscription with no pending events, for the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Event] = asyncio.Queue()

    def deliver(self, event: Event) -> None:
        """Hand an event to the subscriber; never blocks.

        From another event loop (another thread), it is handed over through the
        subscriber's own loop, which wakes up for it; a subscriber whose loop is closed
        is waiting no more.
        """
        if asyncio.get_running_loop() is self._loop:
            self._queue.put_nowait(event)
            return
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._queue.put_nowait, event)

    async def wait(self, timeout: float) -> Event | None:
        """Return the next event, or `None` after `timeout` seconds."""
        if not self._queue.empty():
            return self._queue.get_nowait()
        _, event = await within(self._queue.get(), timeout)
        return event
