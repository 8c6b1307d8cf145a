"""Work that goes on after a call returned: tasks owned by an object, and retries."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
import weakref
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from atomcache_core.exceptions import AtomCacheError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Iterable

__all__ = [
    "BackgroundTasks",
    "StartsOver",
    "keep_trying",
    "keep_until_done",
    "start_over_after_fork",
    "stop_tasks",
    "within",
]

T = TypeVar("T")

#: Seconds between two cancellations of a task that has not ended yet.
RECANCEL_INTERVAL = 0.1


async def stop_tasks(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel `tasks` and return once every one of them has ended.

    A task that loses its cancellation (on Python 3.11, `asyncio.wait_for` drops one
    that arrives as the awaitable it waits for completes, CPython gh-86296) is
    cancelled again every `RECANCEL_INTERVAL` seconds until it ends. Waiting never
    swallows the caller's own cancellation. What the tasks raised is retrieved (not
    logged as "never retrieved"), not re-raised.

    A task of another event loop cannot be waited for here: one of a loop still open
    is cancelled in that loop (as soon as it runs), one of a closed loop, which never
    runs again, is left as it is.
    """
    here = asyncio.get_running_loop()
    tasks = list(tasks)
    pending = set()
    for task in tasks:
        if task.done():
            continue
        loop = task.get_loop()
        if loop is here:
            pending.add(task)
        elif not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed meanwhile
                loop.call_soon_threadsafe(task.cancel)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_INTERVAL)
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()


async def within(work: Awaitable[T], timeout: float) -> tuple[bool, T | None]:
    """Await `work` for at most `timeout` seconds: `(True, result)`, else `(False, None)`.

    Unlike `asyncio.wait_for` on Python 3.11, a cancellation of the caller is never
    lost, even when it arrives as `work` completes: it is raised, and `work` cancelled.
    """
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait((task,), timeout=timeout)
    finally:
        if not task.done():
            task.cancel()
            task.add_done_callback(_retrieve)  # what it raises as it ends is not news
    if not done:
        return False, None
    return True, task.result()


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


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
        """Cancel every task still running and wait for them to end (`stop_tasks`)."""
        await stop_tasks(self._tasks)


def keep_until_done(tasks: dict[str, asyncio.Task[Any]], key: str, task: asyncio.Task[Any]) -> None:
    """Keep `task` under `key` in `tasks` while it runs; its exception is then retrieved."""
    tasks[key] = task
    task.add_done_callback(lambda done: _forget(tasks, key, done))


def _forget(tasks: dict[str, asyncio.Task[Any]], key: str, done: asyncio.Task[Any]) -> None:
    if tasks.get(key) is done:
        del tasks[key]
    if not done.cancelled():
        done.exception()  # retrieved: the callers saw it through the shield


async def keep_trying(attempt: Callable[[], Awaitable[object]], seconds: float) -> bool:
    """Run `attempt` until it ends without an `AtomCacheError`, for at most `seconds`.

    Waits about 50 ms before the first try, and twice as long after each failure, up to
    1 s. Each wait is drawn between half and all of that ("equal jitter", Brooker,
    "Exponential Backoff and Jitter", AWS Architecture Blog, 2015): the many retries a
    Redis outage leaves behind spread out instead of all coming back in the same
    instant, which would take every pooled connection at once.
    Returns whether an attempt got through.
    """
    deadline = time.monotonic() + seconds
    backoff = 0.05
    while time.monotonic() < deadline:
        await asyncio.sleep(random.uniform(backoff / 2, backoff))  # noqa: S311 - not secret
        backoff = min(backoff * 2, 1.0)
        with contextlib.suppress(AtomCacheError):
            await attempt()
            return True
    return False


class StartsOver(Protocol):
    """An object with state of its process: tasks, connections, an identity."""

    def start_over(self) -> object:
        """In a forked child: drop the parent's state; return it, to be set aside."""
        ...


#: Every object that starts over in a forked child (`start_over_after_fork`).
_STARTING_OVER: weakref.WeakSet[StartsOver] = weakref.WeakSet()
#: What forked children's objects inherited from the parent, kept as it was.
_INHERITED: list[object] = []


def start_over_after_fork(owner: StartsOver) -> None:
    """Call `owner.start_over()` in every child forked from this process.

    gunicorn `--preload` and `multiprocessing` with fork copy the parent's objects into
    each worker: its tasks (which never run there), its connections (shared with the
    parent), its identity. What `start_over` returns is kept referenced and untouched:
    a task or connection of the parent finalised in the child would close the parent's
    transports through its event loop, whose epoll instance the child shares.
    """
    _STARTING_OVER.add(owner)


def _start_over_in_child() -> None:
    _INHERITED.extend(owner.start_over() for owner in list(_STARTING_OVER))


if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_start_over_in_child)
