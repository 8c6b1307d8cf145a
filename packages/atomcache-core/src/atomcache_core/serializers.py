"""Serializers: how values become the payload bytes of a stored entry."""

from __future__ import annotations

import json
import pickle
from typing import Any

from atomcache_core.exceptions import SerializationError

__all__ = ["JsonSerializer", "PickleSerializer"]


class JsonSerializer:
    """The default serializer: JSON, compact, UTF-8.

    Round-trips `dict` (with `str` keys), `list`, `str`, `int`, `float`, `bool` and
    `None`. Tuples come back as lists and non-`str` dict keys as strings, as JSON has
    neither. Reading JSON cannot run code, so bytes written by anyone are safe to load.
    """

    __slots__ = ("_decoder", "_encoder")

    def __init__(self) -> None:
        """Create a serializer with a compact encoder."""
        self._encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
        self._decoder = json.JSONDecoder()

    def dumps(self, value: Any) -> bytes:
        """Encode `value` as JSON bytes.

        Raises:
            SerializationError: `value` holds something JSON cannot represent.
        """
        try:
            return self._encoder.encode(value).encode()
        except (TypeError, ValueError, RecursionError) as exc:
            type_name = type(value).__qualname__
            message = (
                f"cannot store a value of type {type_name!r} as JSON ({exc}); convert it "
                "to dict/list/str/int/float/bool/None first (e.g. a pydantic model's "
                ".model_dump(mode='json')), or pass serializer=PickleSerializer() if only "
                "trusted processes can write to your Redis"
            )
            raise SerializationError(message, value_type=type_name, direction="dumps") from exc

    def loads(self, data: bytes) -> Any:
        """Decode JSON bytes.

        Raises:
            SerializationError: the bytes are not valid UTF-8 JSON.
        """
        try:
            return self._decoder.decode(data.decode())
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            message = (
                f"stored payload is not valid JSON ({exc}); it was written by another "
                "serializer or corrupted. It is treated as a miss and will be overwritten"
            )
            raise SerializationError(message, value_type="bytes", direction="loads") from exc


class PickleSerializer:
    """Pickle: any picklable Python object. Opt in only when Redis is fully trusted.

    Unpickling runs code chosen by whoever wrote the bytes. Anyone who can write to
    your Redis (another service, a leaked password, an exposed port) can then run code
    in every process that reads the cache. Use `JsonSerializer` unless every writer
    of the Redis keyspace is yours.
    """

    __slots__ = ("_protocol",)

    def __init__(self, protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
        """Create a serializer using the given pickle protocol."""
        self._protocol = protocol

    def dumps(self, value: Any) -> bytes:
        """Pickle `value`.

        Raises:
            SerializationError: `value` cannot be pickled (a lock, a socket, a lambda).
        """
        try:
            return pickle.dumps(value, protocol=self._protocol)
        except (pickle.PicklingError, TypeError, AttributeError, RecursionError) as exc:
            type_name = type(value).__qualname__
            message = (
                f"cannot pickle a value of type {type_name!r} ({exc}); cache plain data "
                "instead of live objects such as connections, locks or local functions"
            )
            raise SerializationError(message, value_type=type_name, direction="dumps") from exc

    def loads(self, data: bytes) -> Any:
        """Unpickle bytes written by `dumps`.

        Raises:
            SerializationError: the bytes are not a valid pickle.
        """
        try:
            return pickle.loads(data)  # noqa: S301 - opt-in serializer for trusted Redis, see class docstring
        except Exception as exc:  # unpickling can raise anything the payload chooses
            message = f"stored payload is not a valid pickle ({exc}); it is treated as a miss"
            raise SerializationError(message, value_type="bytes", direction="loads") from exc
