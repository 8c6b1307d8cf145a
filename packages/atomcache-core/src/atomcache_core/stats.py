"""Counters that tell how a cache is doing."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

__all__ = ["CacheStats"]


@dataclass
class CacheStats:
    """Counters of one `Cache` object since it was created (or last `reset`).

    Attributes:
        hits: Reads answered by a fresh entry.
        stale_hits: Reads answered by an expired entry inside its stale window.
        misses: Reads that found nothing usable (absent, expired or corrupt).
        corrupt: Misses caused by bytes that are not a valid entry or payload.
        computations: Factory runs by `get_or_set` and the decorators.
        waits: Calls that waited for another process's computation.
        wakeups_notified: Waits ended by a notification.
        wakeups_rechecked: Waits ended by the periodic re-check instead.
        lock_takeovers: Locks taken after their previous owner vanished.
        errors: Backend errors and factory failures seen.
    """

    hits: int = 0
    stale_hits: int = 0
    misses: int = 0
    corrupt: int = 0
    computations: int = 0
    waits: int = 0
    wakeups_notified: int = 0
    wakeups_rechecked: int = 0
    lock_takeovers: int = 0
    errors: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict, e.g. for a metrics exporter."""
        return asdict(self)

    def reset(self) -> None:
        """Set every counter back to zero."""
        for field in fields(self):
            setattr(self, field.name, 0)
