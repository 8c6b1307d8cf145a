"""Automatic pipelining of reads: the GETs issued in one event-loop turn share one MGET.

A read with no other read in flight goes at once, alone: reads one after another wait
for nothing. Under concurrency (another read in flight), the first read of a turn
yields once (`asyncio.sleep(0)`), so that the reads other tasks issue in the same turn
(requests handled together after one `epoll`) join it; then it sends them all as one
`MGET`. Batches never wait for one another: each goes on its own pooled connection as
soon as its turn ends, so a read stuck on a dying connection holds up its own batch
only. This is how ioredis
and valkey-glide pipeline automatically; the client's per-command work (connection
checkout, encoding, parsing) is spent once per batch instead of once per read.
Measured with 50 concurrent `Cache.get`s of different keys on loopback: 4.6 times the
reads per second of one GET each for 35-byte values, 1.45 times for 8 KB JSON values,
whose decoding then takes most of the time (`docs/benchmarks.md`). A cluster's keys
live on several nodes: its reads go one by one.

Every caller gets its own key's value, or the error its batch met. A caller cancelled
while waiting leaves the others unaffected; if the one sending the batch is cancelled,
the batch is sent again for the others. A process forked while a batch forms starts
with none: the batch's sender runs in the parent only.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from atomcache_core._background import start_over_after_fork

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

__all__ = ["ReadBatcher"]

Joined = list[tuple[str, "asyncio.Future[bytes | None]"]]


class ReadBatcher:
    """Sends the reads of one event-loop turn as one batch.

    Args:
        read_one: Reads one key (a `GET`).
        read_many: Reads several keys in one round trip (an `MGET`), values in order.
    """

    def __init__(
        self,
        read_one: Callable[[str], Awaitable[bytes | None]],
        read_many: Callable[[Sequence[str]], Awaitable[list[bytes | None]]],
    ) -> None:
        """Batch reads made through these two functions."""
        self._read_one = read_one
        self._read_many = read_many
        self._forming: Joined | None = None  # the batch of this turn, while it forms
        self._in_flight = 0  # reads and batches sent and not answered yet
        self._handovers: set[asyncio.Task[None]] = set()
        start_over_after_fork(self)

    async def get(self, key: str) -> bytes | None:
        """The value of `key`, read with the other reads issued in this turn."""
        if self._forming is not None:
            future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
            self._forming.append((key, future))
            return await future
        if not self._in_flight:  # nothing to share a round trip with: go now
            self._in_flight += 1
            try:
                return await self._read_one(key)
            finally:
                self._in_flight -= 1
        joined: Joined = []
        self._forming = joined
        try:
            await asyncio.sleep(0)  # the other reads of this turn join
        except asyncio.CancelledError:
            self._hand_over(joined)
            raise
        finally:
            self._forming = None
        self._in_flight += 1
        try:
            if not joined:
                return await self._read_one(key)
            values = await self._read_many([key, *(other for other, _ in joined)])
        except asyncio.CancelledError:
            self._hand_over(joined)
            raise
        except Exception as exc:
            _settle(joined, error=exc)
            raise
        finally:
            self._in_flight -= 1
        _settle(joined, values=values[1:])
        return values[0]

    def _hand_over(self, joined: Joined) -> None:
        """The sender was cancelled: read the joined keys for their callers in a task."""
        if not any(not future.done() for _, future in joined):
            return
        task = asyncio.ensure_future(self._read_for(joined))
        self._handovers.add(task)
        task.add_done_callback(self._handovers.discard)

    async def _read_for(self, joined: Joined) -> None:
        waiting = [(key, future) for key, future in joined if not future.done()]
        try:
            values = await self._read_many([key for key, _ in waiting])
        except asyncio.CancelledError:
            for _, future in waiting:
                future.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - each caller raises it
            _settle(waiting, error=exc)
        else:
            _settle(waiting, values=values)

    async def close(self) -> None:
        """Cancel the reads handed over and still in flight."""
        tasks = list(self._handovers)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def start_over(self) -> object:
        """Start over in a forked child, where the parent's reads in flight never finish.

        A batch forming at the fork would otherwise take every read of the child and
        never be sent. The parent's hand-over tasks are kept, never run nor finalised.
        """
        inherited = self._handovers
        self._forming = None
        self._in_flight = 0
        self._handovers = set()
        return inherited


def _settle(
    joined: Joined, *, values: Sequence[bytes | None] = (), error: Exception | None = None
) -> None:
    """Give each still-waiting caller its value, or the batch's error."""
    for index, (_, future) in enumerate(joined):
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(values[index])
