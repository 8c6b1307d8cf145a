"""Work that goes on after a call returned: tasks owned by an object, and retries."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from atomcache_core.exceptions import AtomCacheError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

__all__ = ["BackgroundTasks", "keep_trying"]


class BackgroundTasks:
    """The tasks an object started and must stop when it closes."""

    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        """Hold no task."""
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        """Number of tasks still running."""
        return len(self._tasks)

    def start(self, work: Coroutine[Any, Any, Any], name: str) -> None:
        """Run `work` in a task, kept until it finishes."""
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Cancel every task still running and wait for them to end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def keep_trying(attempt: Callable[[], Awaitable[object]], seconds: float) -> bool:
    """Run `attempt` until it ends without an `AtomCacheError`, for at most `seconds`.

    Waits 50 ms before the first try, and twice as long after each failure, up to 1 s.
    Returns whether an attempt got through.
    """
    deadline = time.monotonic() + seconds
    backoff = 0.05
    while time.monotonic() < deadline:
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, 1.0)
        with contextlib.suppress(AtomCacheError):
            await attempt()
            return True
    return False
