"""Durations given by users: checked once, the same for every backend."""

from __future__ import annotations

from datetime import timedelta
from typing import TypeAlias

from atomcache_core.exceptions import ConfigurationError

__all__ = ["MAX_TTL", "Seconds", "as_seconds", "checked_seconds"]

Seconds: TypeAlias = "float | timedelta"
"""A duration: a number of seconds, or a `datetime.timedelta`."""

#: The longest TTL or window accepted, in seconds: 10 years. Every backend keeps an
#: entry exactly as long (Redis counts expiries in milliseconds on 64 bits, and an
#: entry's time to live there is its TTL plus its stale windows); longer is refused.
MAX_TTL = 10 * 365 * 24 * 3600


def checked_seconds(value: object, name: str, *, zero: bool = False) -> float:
    """`value` as a float number of seconds, in (0, `MAX_TTL`] (or [0, ...] with `zero`).

    A `datetime.timedelta` counts as its `total_seconds()`.

    Raises:
        ConfigurationError: `value` is not a number, is out of range, or is NaN; the
            message names `name` and the range.
    """
    low = "0" if zero else "more than 0"
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (0 <= value <= MAX_TTL if zero else 0 < value <= MAX_TTL)
    ):
        msg = (
            f"{name} must be a number of seconds from {low} to {MAX_TTL:,} (10 years, "
            f"the same on every backend), got {value!r}"
        )
        raise ConfigurationError(msg)
    return float(value)


def as_seconds(value: Seconds) -> float:
    """A number of seconds as it is; a `datetime.timedelta` as its `total_seconds()`.

    For values checked later (`checked_seconds`), such as a route's options.
    """
    return value.total_seconds() if isinstance(value, timedelta) else value
