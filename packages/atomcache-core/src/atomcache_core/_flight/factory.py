"""Running a factory: in the event loop, timed, never waiting for its own key.

A factory that asks for the key it computes (itself, or through another key's factory)
would wait for itself: `_COMPUTING` knows the keys computed in each context, and
`check_not_computing` refuses such a call at once.
"""

from __future__ import annotations

import inspect
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from atomcache_core._flight.options import Outcome, Uncacheable
from atomcache_core._telemetry import COMPUTATION_DURATION
from atomcache_core.exceptions import ConfigurationError

if TYPE_CHECKING:
    import contextlib
    from collections.abc import Callable

    from atomcache_core._telemetry import Telemetry

__all__ = ["call_factory", "check_not_computing", "compute_unstored", "computing"]

#: The value keys whose factories are running in this context: a factory that asks for
#: one of them (itself, or through another key's factory) would wait for itself.
_COMPUTING: ContextVar[frozenset[str]] = ContextVar("atomcache_computing", default=frozenset())


async def call_factory(factory: Callable[[], Any], value_key: str = "") -> Any:
    """Call a zero-argument factory in the event loop; await what it returns, if awaitable.

    Nothing goes to a thread here: a factory that blocks says so, with
    `lambda: asyncio.to_thread(load)` (a plain `def` under `@cached` does that). While
    it runs, `value_key` counts as being computed in its context (`check_not_computing`).
    """
    token = _COMPUTING.set(_COMPUTING.get() | {value_key}) if value_key else None
    try:
        result = factory()
        while inspect.isawaitable(result):
            result = await result
        return result
    finally:
        if token is not None:
            _COMPUTING.reset(token)


def check_not_computing(key: str, value_key: str) -> None:
    """Refuse to wait for a key whose factory is the caller (directly or not).

    Raises:
        ConfigurationError: `key` is being computed by a factory this call comes from;
            waiting for it would hold its lock, fleet-wide, until the wait timed out.
    """
    if value_key in _COMPUTING.get():
        msg = (
            f"get_or_set({key!r}) was called by the factory computing {key!r} (directly or "
            f"through the factory of another key): it asked for {key!r} while computing it "
            "and would wait for itself; compute the value in the factory instead, or use "
            "another key"
        )
        raise ConfigurationError(msg)


def computing(telemetry: Telemetry) -> contextlib.AbstractAsyncContextManager[list[str]]:
    """Report the computation run in the block: a span, and its duration by outcome.

    The block sets the outcome (`stored` or `uncached`) in the list it is given;
    left unset (the factory raised), it is `failed`.
    """
    return telemetry.timed("compute", COMPUTATION_DURATION, "outcome")


async def compute_unstored(
    telemetry: Telemetry, factory: Callable[[], Any], value_key: str, reason: str = ""
) -> Outcome:
    """Compute the value of `value_key` for this caller alone: nothing is stored.

    `reason` says why, when it is not the factory's choice (`Outcome.reason`).
    """
    telemetry.computation()
    async with computing(telemetry) as outcome:
        value = await call_factory(factory, value_key)
        outcome[0] = "uncached"
    if isinstance(value, Uncacheable):
        return Outcome(value.value, "uncached", reason=reason, shareable=False)
    return Outcome(value, "uncached", reason=reason)
