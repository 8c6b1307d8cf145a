"""State of each event loop: made on first use in a loop, closed as that loop shuts down.

redis-py's asyncio connections and asyncio's futures, queues, events, locks and tasks
belong to the event loop they were made in: used from another one they fail ("Event
loop is closed", "attached to a different loop") or never wake anyone. A cache made at
import time is used by whatever loops run: one `asyncio.run` after another (a script,
a Celery task, a test suite), or one loop per thread at the same time. `PerLoop` keeps
what belongs to a loop for each loop apart, as `start_over_after_fork` does for each
process: made on its first use in the loop, closed when the loop shuts down, forgotten
once the loop is closed.

A loop shuts down by cancelling its tasks before it closes (`asyncio.run`,
`asyncio.Runner`, pytest-asyncio): for a state that holds connections, a task
`PerLoop` starts in its loop then closes it while the loop still runs to await that.
A loop closed without that (`loop.close()` alone) leaves its state to the garbage
collector.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from asyncio import get_running_loop
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from atomcache_core._background import start_over_after_fork, stop_tasks, within

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["PerLoop"]

logger = logging.getLogger("atomcache")

StateT = TypeVar("StateT")

#: Seconds `PerLoop.close` waits for a loop running in another thread to close its state.
OTHER_LOOP_TIMEOUT = 5.0


class PerLoop(Generic[StateT]):
    """One `StateT` for each event loop, made by `make` on first use in the loop.

    Args:
        make: Makes the state of the running loop, given it, in it; what it raises is
            raised to the caller, and the next call tries again.
        close: Closes a state, in its own loop: on `close`, and as the loop shuts down
            if `holds_connections` says so of it (else the state is only forgotten
            then: a task waiting for the loop's end would be one more task for an
            application that waits for all of them).
        holds_connections: Whether a state must be closed before its loop is.
    """

    def __init__(
        self,
        make: Callable[[asyncio.AbstractEventLoop], StateT],
        close: Callable[[StateT], Awaitable[None]],
        holds_connections: Callable[[StateT], bool],
    ) -> None:
        """Hold no state yet."""
        self._make = make
        self._close = close
        self._holds_connections = holds_connections
        self._mutex = threading.Lock()
        #: Each loop's state, and the task that closes it when the loop shuts down.
        self._states: dict[asyncio.AbstractEventLoop, tuple[StateT, asyncio.Task[None] | None]] = {}
        #: The loop that called last and its state, in one tuple: threads read it at once.
        self._current: tuple[object, Any] = (None, None)
        #: The state made or used last, for code that runs outside any loop.
        self.latest: StateT | None = None
        start_over_after_fork(self)

    def get(self) -> StateT:
        """The state of the running loop, made on its first use there.

        Raises:
            RuntimeError: no event loop is running.
        """
        loop = get_running_loop()
        current = self._current
        if current[0] is loop:
            return current[1]  # type: ignore[no-any-return]
        return self._enter(loop)

    def running(self) -> StateT | None:
        """The running loop's state if it has one (none is made); `None` outside a loop."""
        try:
            found = self._states.get(asyncio.get_running_loop())
        except RuntimeError:
            return None
        return None if found is None else found[0]

    def states(self) -> list[StateT]:
        """The state of every loop that has one now."""
        return [state for state, _ in list(self._states.values())]

    def each(self, apply: Callable[[StateT], object]) -> None:
        """Call `apply` with every loop's state, in that loop's thread.

        The running loop's state and those of loops not running now at once; that of a
        loop running in another thread in that loop, as soon as it gets to it.
        """
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        for loop, (state, _) in list(self._states.items()):
            if loop is here or not loop.is_running():
                apply(state)
            else:
                with contextlib.suppress(RuntimeError):  # closed meanwhile: nothing to do
                    loop.call_soon_threadsafe(apply, state)

    async def close(self) -> None:
        """Close the state of every running loop, each in its own loop.

        That of a loop running in another thread is closed there, waited for at most
        `OTHER_LOOP_TIMEOUT` seconds. A loop not running now closes its state when it
        shuts down; a closed loop's is forgotten. The next `get` in a loop makes a new
        state.
        """
        here = asyncio.get_running_loop()
        with self._mutex:
            self._forget_closed()
            states = list(self._states.items())
        elsewhere = []
        for loop, (state, guard) in states:
            if loop is here:
                await self._close_here(loop, state, guard)
            elif loop.is_running():
                closing = self._close_here(loop, state, guard)
                elsewhere.append(asyncio.run_coroutine_threadsafe(closing, loop))
        if elsewhere:
            waits = asyncio.gather(*map(asyncio.wrap_future, elsewhere))
            await within(waits, OTHER_LOOP_TIMEOUT)

    def start_over(self) -> object:
        """In a forked child: no loop's state; the parent's are set aside, untouched."""
        inherited = self._states
        self._states, self._current, self.latest = {}, (None, None), None
        self._mutex = threading.Lock()  # a thread of the parent may have held it
        return inherited

    def _enter(self, loop: asyncio.AbstractEventLoop) -> StateT:
        """Switch to `loop`'s state, made now if it has none."""
        found = self._states.get(loop)  # threads taking turns: no need to wait for the mutex
        if found is None:
            with self._mutex:
                found = self._states.get(loop)
                if found is None:
                    self._forget_closed()
                    state = self._make(loop)
                    guard = None
                    if self._holds_connections(state):
                        closing = self._close_with(loop, state)
                        guard = loop.create_task(closing, name="atomcache-loop")
                    found = self._states[loop] = (state, guard)
        self._current = (loop, found[0])
        self.latest = found[0]
        return found[0]

    async def _close_with(self, loop: asyncio.AbstractEventLoop, state: StateT) -> None:
        """Wait until the loop shuts down (this task is cancelled), then close `state`."""
        try:
            await loop.create_future()
        finally:
            if self._forget(loop, state):
                await self._closed_quietly(state)

    async def _close_here(
        self,
        loop: asyncio.AbstractEventLoop,
        state: StateT,
        guard: asyncio.Task[None] | None,
    ) -> None:
        """Close `state` now, in its loop, and the task that would have closed it."""
        if self._forget(loop, state):
            await stop_tasks([guard] if guard is not None else [])
            await self._close(state)

    async def _closed_quietly(self, state: StateT) -> None:
        """Close the state of a loop that shuts down; a failure is logged, not raised.

        Raised, it would be reported as an error of the loop's shutdown, which has
        nothing to do with it.
        """
        try:
            await self._close(state)
        except Exception:
            logger.warning("could not close what an event loop used", exc_info=True)

    def _forget(self, loop: asyncio.AbstractEventLoop, state: StateT) -> bool:
        """Forget `loop`'s state if it is `state`; whether it was."""
        with self._mutex:
            found = self._states.get(loop)
            if found is None or found[0] is not state:
                return False
            del self._states[loop]
            if self._current[0] is loop:
                self._current = (None, None)
            return True

    def _forget_closed(self) -> None:
        """Forget the states of closed loops (with the mutex held)."""
        for loop in [loop for loop in self._states if loop.is_closed()]:
            del self._states[loop]
            if self._current[0] is loop:
                self._current = (None, None)
