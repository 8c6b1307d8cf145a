"""Background work: a lost cancellation cannot make a shutdown hang; retries spread out."""

from __future__ import annotations

import asyncio
import functools
import time

import pytest

from atomcache_core import BackendUnavailableError
from atomcache_core._background import keep_trying, stop_tasks, within


async def test_a_task_that_swallows_its_cancellation_is_stopped() -> None:
    """A task that ignores the first cancel (as `wait_for` makes some on 3.11) still ends."""
    cancels = 0

    async def stubborn() -> None:
        nonlocal cancels
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:  # noqa: PERF203 - what the test is about
                cancels += 1
                if cancels >= 3:
                    raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(stop_tasks([task]), 5)
    assert task.cancelled()
    assert cancels == 3


async def test_stopping_does_not_swallow_the_callers_cancellation() -> None:
    """Cancelling the task that stops others cancels it, whatever they do."""
    holding = True

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:  # noqa: PERF203 - what the test is about
                if not holding:
                    raise

    worker = asyncio.create_task(stubborn())
    stopper = asyncio.create_task(stop_tasks([worker]))
    await asyncio.sleep(0.05)
    stopper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopper
    assert not worker.done()
    holding = False
    await stop_tasks([worker])
    assert worker.cancelled()


async def test_within_never_loses_a_cancellation_that_meets_a_result() -> None:
    """A cancellation arriving as the awaited work completes is raised, not dropped."""
    queue: asyncio.Queue[int] = asyncio.Queue()

    async def waiter() -> tuple[bool, int | None]:
        return await within(queue.get(), 10.0)

    task = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    queue.put_nowait(1)  # the inner get completes in this loop iteration...
    task.cancel()  # ...as the waiter is cancelled
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_within_returns_the_result_or_times_out() -> None:
    """`(True, result)` in time, `(False, None)` after the timeout."""
    assert await within(asyncio.sleep(0, "done"), 1.0) == (True, "done")
    assert await within(asyncio.sleep(10), 0.01) == (False, None)


async def test_retries_left_by_one_outage_come_back_spread_out() -> None:
    """100 retries started together do not all try again in the same instant (jitter).

    In lockstep they would take every pooled connection at once, again and again.
    """
    first_tries: dict[int, float] = {}

    async def failing(caller: int) -> None:
        first_tries.setdefault(caller, time.monotonic())
        msg = "Redis is away"
        raise BackendUnavailableError(msg)

    await asyncio.gather(*(keep_trying(functools.partial(failing, n), 0.06) for n in range(100)))
    assert len(first_tries) == 100
    spread = max(first_tries.values()) - min(first_tries.values())
    assert spread > 0.01, f"first retries within {spread * 1000:.1f} ms of one another"
