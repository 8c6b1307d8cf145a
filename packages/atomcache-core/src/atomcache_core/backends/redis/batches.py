"""Work over many keys in bounded steps: keys found by `SCAN`, calls a few at a time."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from atomcache_core.backends.redis.clients import RedisClient

__all__ = ["in_batches", "in_turns"]

_T = TypeVar("_T")

#: How many keys `in_batches` hands `act` at once.
_CLEAR_BATCH = 500
#: How many calls `in_turns` has under way at once: a cluster's pools are per node.
_AT_ONCE = 16


async def in_batches(
    client: RedisClient, pattern: str, act: Callable[[list[bytes]], Awaitable[int]]
) -> int:
    """`act` on the keys matching the glob `pattern`, `_CLEAR_BATCH` at a time; the sum.

    The keys are found with `SCAN` (on every master of a cluster), never `KEYS`.
    """
    done = 0
    batch: list[bytes] = []
    async for key in client.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) >= _CLEAR_BATCH:
            done += await act(batch)
            batch = []
    return done + (await act(batch) if batch else 0)


async def in_turns(calls: Sequence[Callable[[], Awaitable[_T]]]) -> list[_T]:
    """Run the calls concurrently, `_AT_ONCE` at a time; their results in order."""
    results: list[_T] = []
    for start in range(0, len(calls), _AT_ONCE):
        results.extend(await asyncio.gather(*(call() for call in calls[start : start + _AT_ONCE])))
    return results
