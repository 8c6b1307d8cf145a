"""What an in-process store may hold: a count of entries and of bytes, both bounded."""

from __future__ import annotations

from atomcache_core.exceptions import ConfigurationError

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_ENTRIES", "ENTRY_OVERHEAD", "Budget"]

#: Entries an in-process store keeps by default.
DEFAULT_MAX_ENTRIES = 10_000
#: Bytes an in-process store keeps by default: 64 MiB.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
#: Bytes counted for each entry on top of its key and value: what Python spends on the
#: entry's objects (dict slot, tuple, key and bytes headers, expiry), measured with
#: `tracemalloc` on CPython 3.11 (about 300 bytes) and rounded up.
ENTRY_OVERHEAD = 400


class Budget:
    """The bounds of one store and what it holds now.

    Args:
        max_entries: At most this many entries.
        max_bytes: At most this many bytes, counting each entry as `size` does.
        prefix: How the settings are spelled to the user (`""` or `"local_"`), for
            error messages.

    Raises:
        ConfigurationError: a bound is not a positive integer.
    """

    __slots__ = ("held", "max_bytes", "max_entries")

    def __init__(self, max_entries: int, max_bytes: int, prefix: str = "") -> None:
        """Start empty."""
        for name, bound in (("max_entries", max_entries), ("max_bytes", max_bytes)):
            if isinstance(bound, bool) or not isinstance(bound, int) or bound < 1:
                msg = f"{prefix}{name} must be a positive integer, got {bound!r}"
                raise ConfigurationError(msg)
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.held = 0

    @staticmethod
    def size(key: str, value: bytes) -> int:
        """Bytes counted for one entry: key, value and `ENTRY_OVERHEAD`."""
        return len(key) + len(value) + ENTRY_OVERHEAD

    def fits(self, size: int) -> bool:
        """Whether one entry of `size` bytes may be kept at all."""
        return size <= self.max_bytes

    def exceeded(self, entries: int) -> bool:
        """Whether `entries` entries holding `held` bytes are over a bound."""
        return entries > self.max_entries or self.held > self.max_bytes
