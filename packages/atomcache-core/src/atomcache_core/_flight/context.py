"""What single flight is given instead of the `Cache`: a narrow view of it.

`FlightContext` is what it reads of its cache (keys, serializer, telemetry, decoding);
`FlightParts` the backends of its event loop, which it reads and writes through.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from atomcache_core.entry import decode_entry
from atomcache_core.exceptions import SerializationError

if TYPE_CHECKING:
    import asyncio

    from atomcache_core._flight.options import FlightOptions
    from atomcache_core._refresh import RefreshAhead
    from atomcache_core._telemetry import Telemetry
    from atomcache_core.entry import Entry
    from atomcache_core.keys import KeyBuilder
    from atomcache_core.protocols import LockBackend, Notifier, Serializer, Storage

__all__ = ["FlightContext", "FlightParts"]


@dataclass(frozen=True, slots=True)
class FlightContext:
    """What single flight reads of its cache besides its loop's backends (`FlightParts`).

    Attributes:
        keys: The storage keys of the cache's own version.
        serializer: Encodes values unless a call brings its own.
        telemetry: Counts and reports each event.
    """

    keys: KeyBuilder
    serializer: Serializer
    telemetry: Telemetry

    def keys_of(self, options: FlightOptions) -> KeyBuilder:
        """The storage keys of a call: its version's (`options.keys`), else the cache's."""
        return options.keys or self.keys

    def decode(
        self, data: bytes | None, serializer: Serializer | None = None
    ) -> tuple[Entry, Any] | None:
        """Decode stored bytes into the entry and its value; `None` if absent or corrupt.

        Corrupt bytes (not an entry of this format version, or a payload the serializer
        rejects) are counted in `stats.corrupt`.
        """
        if data is None:
            return None
        entry = decode_entry(data)
        if entry is None:
            self.telemetry.corrupt()
            return None
        try:
            return entry, (serializer or self.serializer).loads(entry.payload)
        except SerializationError:
            self.telemetry.corrupt()
            return None


class FlightParts(Protocol):
    """What single flight reads and writes through: the backends of one event loop.

    `atomcache_core._parts.Parts` is one; single flight needs nothing else of it.
    """

    @property
    def storage(self) -> Storage:
        """Where values are read and written (the local tier, if any)."""

    @property
    def shared_storage(self) -> Storage:
        """The storage every instance shares, as reads must see it."""

    @property
    def lock(self) -> LockBackend:
        """The single-flight locks."""

    @property
    def notifier(self) -> Notifier:
        """The wake-ups of waiters."""

    @property
    def refresher(self) -> RefreshAhead:
        """The refresh-ahead loops."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop these parts belong to, once known."""
