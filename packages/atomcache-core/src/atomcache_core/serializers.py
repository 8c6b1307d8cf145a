"""Serializers: how values become the payload bytes of a stored entry."""

from __future__ import annotations

import functools
import importlib
import json
import pickle
from typing import TYPE_CHECKING, Any

from atomcache_core.exceptions import SerializationError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["JsonSerializer", "MsgspecSerializer", "OrjsonSerializer", "PickleSerializer"]


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
            advice = (
                ", or pass serializer=PickleSerializer() if only trusted processes can write "
                "to your Redis"
            )
            raise _unencodable(value, "as JSON", exc, advice) from exc

    def loads(self, data: bytes) -> Any:
        """Decode JSON bytes.

        Raises:
            SerializationError: the bytes are not valid UTF-8 JSON.
        """
        try:
            return self._decoder.decode(data.decode())
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise _undecodable("", exc) from exc


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


def _optional(module: str, serializer: str, extra: str) -> Any:
    """Import `module`, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        msg = f"{serializer} needs {extra}: pip install atomcache-core[{extra}]"
        raise ImportError(msg, name=module) from exc


def _unencodable(value: Any, how: str, exc: Exception, advice: str = "") -> SerializationError:
    """The error for a value a JSON serializer cannot write (`how`: "as JSON", "with orjson")."""
    type_name = type(value).__qualname__
    message = (
        f"cannot store a value of type {type_name!r} {how} ({exc}); convert it to "
        "dict/list/str/int/float/bool/None first (e.g. a pydantic model's "
        f".model_dump(mode='json')){advice}"
    )
    return SerializationError(message, value_type=type_name, direction="dumps")


def _undecodable(name: str, exc: Exception) -> SerializationError:
    """The error for bytes a JSON serializer cannot read (`name`: the library, if not json)."""
    message = (
        f"stored payload is not valid JSON{f' for {name}' if name else ''} ({exc}); it was "
        "written by another serializer or corrupted. It is treated as a miss and will be "
        "overwritten"
    )
    return SerializationError(message, value_type="bytes", direction="loads")


class _JsonThrough:
    """JSON encoded and decoded by a library's two functions, with atomcache's errors."""

    __slots__ = ("_dump", "_load", "_load_errors", "_name")

    def __init__(
        self,
        name: str,
        dump: Callable[[Any], bytes],
        load: Callable[[bytes], Any],
        load_errors: tuple[type[Exception], ...],
    ) -> None:
        self._name = name
        self._dump = dump
        self._load = load
        self._load_errors: tuple[type[Exception], ...] = (*load_errors, ValueError, RecursionError)

    def dumps(self, value: Any) -> bytes:
        """Encode `value` as JSON bytes.

        Raises:
            SerializationError: the library cannot encode `value`.
        """
        try:
            return self._dump(value)
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            raise _unencodable(value, f"with {self._name}", exc) from exc

    def loads(self, data: bytes) -> Any:
        """Decode JSON bytes.

        Raises:
            SerializationError: the bytes are not valid UTF-8 JSON.
        """
        try:
            return self._load(data)
        except self._load_errors as exc:
            raise _undecodable(self._name, exc) from exc


class OrjsonSerializer(_JsonThrough):
    """JSON through orjson (`pip install atomcache-core[orjson]`): faster than the default.

    Writes the same JSON as `JsonSerializer` (compact, UTF-8, non-`str` dict keys as
    strings), so entries written by one are read by the other. Also encodes what orjson
    encodes natively (`datetime`, `UUID`, dataclasses, enums), which read back as JSON
    types. Integers beyond 64 bits are refused.

    Raises:
        ImportError: orjson is not installed.
    """

    __slots__ = ()

    def __init__(self) -> None:
        """Load orjson."""
        orjson = _optional("orjson", "OrjsonSerializer", "orjson")
        options = orjson.OPT_NON_STR_KEYS
        super().__init__(
            "orjson",
            functools.partial(orjson.dumps, option=options),
            orjson.loads,
            (orjson.JSONDecodeError,),
        )


class MsgspecSerializer(_JsonThrough):
    """JSON through msgspec (`pip install atomcache-core[msgspec]`): faster than the default.

    Writes the same JSON as `JsonSerializer` (compact, UTF-8), so entries written by one
    are read by the other; non-`str` dict keys of `int` type are written as strings.
    Also encodes what msgspec encodes natively (`datetime`, `UUID`, dataclasses,
    `msgspec.Struct`, sets and tuples as arrays, integers of any size), which read back
    as JSON types.

    Raises:
        ImportError: msgspec is not installed.
    """

    __slots__ = ()

    def __init__(self) -> None:
        """Load msgspec."""
        msgspec = _optional("msgspec", "MsgspecSerializer", "msgspec")
        super().__init__(
            "msgspec",
            msgspec.json.Encoder().encode,
            msgspec.json.Decoder().decode,
            (msgspec.DecodeError,),
        )
