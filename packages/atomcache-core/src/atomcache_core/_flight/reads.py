"""How stored values come back to callers: shared reads, kept and per-caller decodings.

Concurrent callers of one key share one storage read (`Reads.read`). Values that are
never mutated keep their last decoding per key (`Reads.decode`); every other value a
computation shares is decoded again for each caller (`own`), as a hit would be.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING, Any

from atomcache_core.exceptions import SerializationError

if TYPE_CHECKING:
    from atomcache_core._flight.context import FlightContext, FlightParts
    from atomcache_core._flight.options import FlightOptions, Outcome
    from atomcache_core.entry import Entry
    from atomcache_core.protocols import Serializer

__all__ = ["REUSE_HELD_BYTES", "Reads", "own"]

_RETRY: Any = object()
_REUSE_MAX_KEYS = 512
_REUSE_MAX_BYTES = 1024 * 1024
#: Most bytes of stored values the decoding memo holds on to (each decoded value is
#: about as large again): the memory a process uses beyond its storage's bounds.
REUSE_HELD_BYTES = 8 * 1024 * 1024


class Reads:
    """The reads of one single flight: shared while under way, decodings kept if immutable."""

    def __init__(self, context: FlightContext, parts: FlightParts) -> None:
        """Read through `parts`, decode with `context`."""
        self._context = context
        self._parts = parts
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._decoded: dict[str, tuple[bytes, tuple[Entry, Any]]] = {}
        self._decoded_bytes = 0

    def start_over(self) -> object:
        """Forget the reads under way (a forked child's); return them, left untouched."""
        inherited, self._pending = self._pending, {}
        return inherited

    def forget_decoded(self) -> None:
        """Empty the memo of decodings: the next read of every key decodes again."""
        self._decoded.clear()
        self._decoded_bytes = 0

    async def read(self, value_key: str) -> bytes | None:
        """Read `value_key`, sharing one storage read among concurrent callers."""
        while (pending := self._pending.get(value_key)) is not None:
            data = await asyncio.shield(pending)
            if data is not _RETRY:
                return data  # type: ignore[no-any-return]
        loop = self._parts.loop or asyncio.get_running_loop()  # known: no second look
        future = self._pending[value_key] = loop.create_future()
        try:
            data = await self._parts.storage.get(value_key)
        except asyncio.CancelledError:
            future.set_result(_RETRY)  # the others read for themselves
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here, even if nobody else was waiting
            raise
        else:
            future.set_result(data)
        finally:
            del self._pending[value_key]
        return data

    def decode(
        self, value_key: str, data: bytes | None, options: FlightOptions
    ) -> tuple[Entry, Any] | None:
        """Decode stored bytes; immutable values are reused while the bytes are the same.

        With `options.reuse_decoded` (values that are never mutated, like stored HTTP
        responses), the last decoding of each key is kept: reading the same bytes again
        (the same object from memory, equal bytes from Redis) skips checksum and parsing.
        """
        if not options.reuse_decoded or data is None or len(data) > _REUSE_MAX_BYTES:
            return self._context.decode(data, options.serializer)
        memo = self._decoded.get(value_key)
        if memo is not None and (memo[0] is data or memo[0] == data):
            return memo[1]
        found = self._context.decode(data, options.serializer)
        if found is not None:
            held = self._decoded_bytes + len(data) - (len(memo[0]) if memo is not None else 0)
            if len(self._decoded) >= _REUSE_MAX_KEYS or held > REUSE_HELD_BYTES:
                self._decoded.clear()
                held = len(data)
            self._decoded[value_key] = (data, found)
            self._decoded_bytes = held
        return found


def own(outcome: Outcome, options: FlightOptions, serializer: Serializer) -> Outcome:
    """A shared computation's outcome, with a value of this caller's own.

    Every caller of a computation, the first included, gets what a hit would
    return: the value decoded from its serialized form (a tuple comes back as a
    list from JSON), one object per caller, so none sees another's changes. Not for
    immutable values (`options.reuse_decoded`) nor for one computed only for its
    caller (`Uncacheable`). `serializer` is the cache's, unless `options` bring one.

    Raises:
        SerializationError: a value computed without the backend cannot be
            serialized: refused as it is when the backend answers.
    """
    if options.reuse_decoded or not outcome.shareable:
        return outcome
    serializer = options.serializer or serializer
    encoded = outcome.encoded
    if encoded is None:  # computed without storing: the backend away, a wait over
        encoded = serializer.dumps(outcome.value)  # what could not be stored is refused
    try:
        value = serializer.loads(encoded)
    except SerializationError:
        return outcome  # a serializer that cannot read what it wrote: the value as is
    return dataclasses.replace(outcome, value=value)
