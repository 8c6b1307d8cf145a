"""The checks of what users give `Cache`: durations, windows, tags, policies."""

from __future__ import annotations

from typing import TYPE_CHECKING

from atomcache_core._flight.options import FlightOptions
from atomcache_core._seconds import Seconds, checked_seconds
from atomcache_core.exceptions import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from atomcache_core.keys import KeyBuilder

__all__ = [
    "checked_names",
    "checked_policy",
    "checked_ttl",
    "checked_window",
    "flight_options",
]


def checked_ttl(ttl: Seconds, name: str = "ttl") -> float:
    """`ttl` as seconds, more than 0 (`checked_seconds`)."""
    return checked_seconds(ttl, name)


def checked_window(seconds: Seconds, name: str) -> float:
    """`seconds` as seconds, 0 included (`checked_seconds`)."""
    return checked_seconds(seconds, name, zero=True)


def checked_names(names: Iterable[str], parameter: str) -> tuple[str, ...]:
    """`names` (the tags of an entry, the `exclude=` of a decorator) as a tuple.

    Raises:
        ConfigurationError: `names` is one string, which would pass for its letters.
    """
    if isinstance(names, str):
        msg = (
            f"{parameter} takes a list of names, a collection of strings such as "
            f"({names!r},), not the string {names!r}"
        )
        raise ConfigurationError(msg)
    return tuple(names)


def checked_policy(on_wait_timeout: str) -> None:
    """Refuse an `on_wait_timeout` that is neither `"compute"` nor `"raise"`.

    Raises:
        ConfigurationError: it is neither.
    """
    if on_wait_timeout not in ("compute", "raise"):
        msg = f"on_wait_timeout must be 'compute' or 'raise', got {on_wait_timeout!r}"
        raise ConfigurationError(msg)


def flight_options(
    ttl: float,
    tags: Iterable[str],
    *,
    stale_ttl: Seconds,
    stale_if_error: Seconds,
    beta: float,
    refresh_ahead: bool,
    refresh_idle: float | None,
    keys: Callable[[int], KeyBuilder] | None,
    version: int | None,
) -> FlightOptions:
    """The options of one `Cache.get_or_set` call, checked; `keys(version)` if `keys`.

    Raises:
        ConfigurationError: an option is invalid.
    """
    return FlightOptions(
        ttl=ttl,
        tags=checked_names(tags, "tags"),
        stale_ttl=checked_window(stale_ttl, "stale_ttl"),
        stale_if_error=checked_window(stale_if_error, "stale_if_error"),
        beta=checked_window(beta, "beta"),
        refresh_ahead=refresh_ahead,
        refresh_idle=None if refresh_idle is None else checked_ttl(refresh_idle, "refresh_idle"),
        keys=None if keys is None or version is None else keys(version),
    )
