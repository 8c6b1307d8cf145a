"""Serializers: how values become the payload bytes of a stored entry.

The three JSON serializers keep one rule: a value is read back exactly, by any of them,
or refused when written. JSON has no NaN or Infinity (RFC 8259, section 6), so all
three refuse them, writing and reading alike; orjson reads an integer beyond 64 bits as
a float, so all three refuse to write one.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import json
import math
import pickle
from typing import TYPE_CHECKING, Any, NoReturn

from atomcache_core.exceptions import SerializationError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["JsonSerializer", "MsgspecSerializer", "OrjsonSerializer", "PickleSerializer"]

_PICKLE_ADVICE = (
    "pass serializer=PickleSerializer() if only trusted processes can write to your Redis"
)


def _refuse_constant(name: str) -> NoReturn:
    """Refuse the `NaN`, `Infinity` and `-Infinity` tokens Python's json would read."""
    msg = f"{name} is not JSON (RFC 8259 has no NaN or Infinity)"
    raise ValueError(msg)


class JsonSerializer:
    """The default serializer: JSON, compact, UTF-8.

    Round-trips `dict` (with `str` keys), `list`, `str`, `int` (from -2**63 to
    2**64-1), finite `float`, `bool` and `None`. Tuples come back as lists and non-`str`
    dict keys as strings, as JSON has neither. NaN and ±Infinity are refused, as JSON
    has neither: `dumps` raises, and `loads` treats the `NaN`/`Infinity` tokens
    Python's json once wrote as corrupt. Longer integers are refused by `dumps`, as
    `OrjsonSerializer` could not read them back. Reading JSON cannot run code, so bytes
    written by anyone are safe to load.
    """

    __slots__ = ("_decoder", "_encoder")

    def __init__(self) -> None:
        """Create a serializer with a compact encoder; both ends refuse NaN and Infinity."""
        self._encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        self._decoder = json.JSONDecoder(parse_constant=_refuse_constant)

    def dumps(self, value: Any) -> bytes:
        """Encode `value` as JSON bytes.

        Raises:
            SerializationError: `value` holds something JSON cannot represent: another
                type, NaN or ±Infinity, an integer beyond 64 bits, or itself.
        """
        try:
            data = self._encoder.encode(value).encode()
        except (TypeError, ValueError, RecursionError) as exc:
            raise _unencodable(value, "as JSON", exc, f", or {_PICKLE_ADVICE}") from exc
        _refuse_long_integers(value, data, "as JSON")
        return data

    def loads(self, data: bytes) -> Any:
        """Decode JSON bytes.

        Raises:
            SerializationError: the bytes are not valid UTF-8 JSON (`NaN` and
                `Infinity` are not JSON).
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


_NOTHING: Any = object()
_LEAVES = frozenset({str, int, float, bool, type(None)})


def _find(value: Any, kind: type, is_wrong: Callable[[Any], bool]) -> Any:
    """A `kind` inside `value` that `is_wrong` (`_NOTHING` if none): the slow path of a refusal.

    Walks what the JSON libraries encode: dicts (values), lists, tuples, sets, enums and
    dataclasses, each once, as a value that failed to encode may hold itself.
    """
    pending, seen = [value], set()
    while pending:
        item = pending.pop()
        if isinstance(item, kind):
            if is_wrong(item):
                return item
        elif type(item) in _LEAVES or id(item) in seen:
            continue
        else:
            seen.add(id(item))
            if isinstance(item, dict):
                pending.extend(item.values())
            elif isinstance(item, (list, tuple, set, frozenset)):
                pending.extend(item)
            elif isinstance(item, enum.Enum):
                pending.append(item.value)
            elif dataclasses.is_dataclass(item) and not isinstance(item, type):
                pending.extend(getattr(item, field.name) for field in dataclasses.fields(item))
    return _NOTHING


def _is_non_finite(number: float) -> bool:
    """NaN, Infinity or -Infinity: floats JSON has no number for."""
    return not math.isfinite(number)


def _is_beyond_64_bits(number: int) -> bool:
    """An integer outside -2**63 .. 2**64-1, which orjson can neither write nor read."""
    return not -(2**63) <= number < 2**64


def _refused(value: Any, why: str) -> SerializationError:
    """The error for a value a JSON serializer refuses to write (`why`: how, reason and fix)."""
    type_name = type(value).__qualname__
    message = f"cannot store a value of type {type_name!r} {why}"
    return SerializationError(message, value_type=type_name, direction="dumps")


def _non_finite(value: Any, number: float, how: str) -> SerializationError:
    """The error for a value holding NaN or ±Infinity."""
    why = (
        f"{how}: it holds {number!r}, and JSON has no NaN or Infinity (RFC 8259), so it "
        f"would not read back as a float. Store None or a string such as {str(number)!r} "
        f"in its place, or {_PICKLE_ADVICE}"
    )
    return _refused(value, why)


_SHOWN_BITS = 200  # an error message names a longer integer by its size (about 60 digits)


def _beyond_64_bits(value: Any, number: int, how: str) -> SerializationError:
    """The error for a value holding an integer beyond 64 bits."""
    bits = number.bit_length()
    shown = f"the integer {number!r}" if bits <= _SHOWN_BITS else f"an integer of {bits} bits"
    why = (
        f"{how}: it holds {shown}, and the JSON serializers write integers from -2**63 to "
        "2**64-1 only (orjson cannot write a longer one, and reads it as a float). Store "
        f"it as a string instead, or {_PICKLE_ADVICE}"
    )
    return _refused(value, why)


# Written out, an integer beyond -2**63 .. 2**64-1 is 20 digits or more, or a minus sign
# and 19: a run of 20 bytes from "-0123456789". Every fifth byte is looked at first: a
# run of 20 holds four of them in a row, which most documents do not have.
_NUMBER_BYTES_TO_ZERO = bytes(0 if byte in b"-0123456789" else 1 for byte in range(256))
_RUN = bytes(20)
_EVERY_FIFTH_OF_A_RUN = bytes(4)


def _as_is(value: Any) -> Any:
    """`value` itself: nothing to open up before `_find` walks it."""
    return value


def _refuse_long_integers(
    value: Any, data: bytes, how: str, plain: Callable[[Any], Any] = _as_is
) -> None:
    """Raise if `data`, the JSON written for `value`, holds an integer beyond 64 bits.

    A long run of digits is rare; inside a string, or a float's, it only costs a walk
    of `plain(value)` that finds nothing.

    Raises:
        SerializationError: `value` holds an integer beyond 64 bits.
    """
    if _EVERY_FIFTH_OF_A_RUN in data[::5].translate(_NUMBER_BYTES_TO_ZERO) and _RUN in (
        data.translate(_NUMBER_BYTES_TO_ZERO)
    ):
        number = _find(plain(value), int, _is_beyond_64_bits)
        if number is not _NOTHING:
            raise _beyond_64_bits(value, number, how)


def _unencodable(value: Any, how: str, exc: Exception, advice: str = "") -> SerializationError:
    """The error for a value a JSON serializer cannot write (`how`: "as JSON", "with orjson")."""
    number = _find(value, float, _is_non_finite)
    if number is not _NOTHING:
        return _non_finite(value, number, how)
    number = _find(value, int, _is_beyond_64_bits)
    if number is not _NOTHING:
        return _beyond_64_bits(value, number, how)
    why = (
        f"{how} ({exc}); convert it to dict/list/str/int/float/bool/None first (e.g. a "
        f"pydantic model's .model_dump(mode='json')){advice}"
    )
    return _refused(value, why)


def _undecodable(name: str, exc: Exception) -> SerializationError:
    """The error for bytes a JSON serializer cannot read (`name`: the library, if not json)."""
    message = (
        f"stored payload is not valid JSON{f' for {name}' if name else ''} ({exc}); it was "
        "written by another serializer or corrupted. It is treated as a miss and will be "
        "overwritten"
    )
    return SerializationError(message, value_type="bytes", direction="loads")


class _JsonThrough:
    """JSON encoded and decoded by a library's two functions, with atomcache's errors.

    orjson and msgspec write NaN and ±Infinity as `null`: when `null` appears in what
    they wrote and the value does not read back equal, it is searched for such a float
    (the slow path), and refused if it holds one.
    """

    __slots__ = ("_dump", "_how", "_load", "_load_errors", "_name")
    _writes_long_integers = True  # the library writes integers beyond 64 bits: look for them

    def __init__(
        self,
        name: str,
        dump: Callable[[Any], bytes],
        load: Callable[[bytes], Any],
        load_errors: tuple[type[Exception], ...],
    ) -> None:
        self._name = name
        self._how = f"with {name}"
        self._dump = dump
        self._load = load
        self._load_errors: tuple[type[Exception], ...] = (*load_errors, ValueError, RecursionError)

    def dumps(self, value: Any) -> bytes:
        """Encode `value` as JSON bytes.

        Raises:
            SerializationError: the library cannot encode `value`, or `value` holds NaN,
                ±Infinity or an integer beyond 64 bits.
        """
        try:
            data = self._dump(value)
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            raise _unencodable(value, self._how, exc) from exc
        # The library wrote NaN and ±Infinity as null, as it does None. A value that reads
        # back equal holds neither (they would come back as None); else walk it to see.
        # rfind, not `in`: searching for "null" from the end skips further (its last
        # letter repeats), at twice the speed in CPython 3.11.
        if data.rfind(b"null") != -1 and self._load(data) != value:
            number = _find(self._plain(value), float, _is_non_finite)
            if number is not _NOTHING:
                raise _non_finite(value, number, self._how)
        if self._writes_long_integers:
            _refuse_long_integers(value, data, self._how, self._plain)
        return data

    def loads(self, data: bytes) -> Any:
        """Decode JSON bytes.

        Raises:
            SerializationError: the bytes are not valid UTF-8 JSON.
        """
        try:
            return self._load(data)
        except self._load_errors as exc:
            raise _undecodable(self._name, exc) from exc

    def _plain(self, value: Any) -> Any:
        """`value` with the library's own types opened up for `_find`."""
        return value


def _orjson_dump(orjson: Any) -> Callable[[Any], bytes]:
    """Encode with orjson, writing non-`str` dict keys as strings.

    `OPT_NON_STR_KEYS` slows the encoding of every dict (by half for a small one), so
    it is passed only when a first try without it fails.
    """
    dumps, non_str_keys = orjson.dumps, orjson.OPT_NON_STR_KEYS

    def dump(value: Any) -> bytes:
        try:
            return dumps(value)  # type: ignore[no-any-return]
        except TypeError:
            return dumps(value, option=non_str_keys)  # type: ignore[no-any-return]

    return dump


class OrjsonSerializer(_JsonThrough):
    """JSON through orjson (`pip install atomcache-core[orjson]`): faster than the default.

    Writes the same JSON as `JsonSerializer` (compact, UTF-8, non-`str` dict keys as
    strings), so entries written by one are read by the other. Also encodes what orjson
    encodes natively (`datetime`, `UUID`, dataclasses, enums), which read back as JSON
    types. Refuses NaN and ±Infinity (orjson would write `null`) and integers beyond
    64 bits (-2**63 to 2**64-1), which orjson cannot write.

    Raises:
        ImportError: orjson is not installed.
    """

    __slots__ = ()
    _writes_long_integers = False  # orjson refuses them itself

    def __init__(self) -> None:
        """Load orjson."""
        orjson = _optional("orjson", "OrjsonSerializer", "orjson")
        super().__init__("orjson", _orjson_dump(orjson), orjson.loads, (orjson.JSONDecodeError,))


class MsgspecSerializer(_JsonThrough):
    """JSON through msgspec (`pip install atomcache-core[msgspec]`): faster than the default.

    Writes the same JSON as `JsonSerializer` (compact, UTF-8), so entries written by one
    are read by the other; non-`str` dict keys of `int` type are written as strings.
    Also encodes what msgspec encodes natively (`datetime`, `UUID`, dataclasses,
    `msgspec.Struct`, sets and tuples as arrays), which read back as JSON types. Refuses
    NaN and ±Infinity (msgspec would write `null`) and integers beyond 64 bits (-2**63 to
    2**64-1), which `OrjsonSerializer` could not read back.

    Raises:
        ImportError: msgspec is not installed.
    """

    __slots__ = ("_to_builtins",)

    def __init__(self) -> None:
        """Load msgspec."""
        msgspec = _optional("msgspec", "MsgspecSerializer", "msgspec")
        super().__init__(
            "msgspec",
            msgspec.json.Encoder().encode,
            msgspec.json.Decoder().decode,
            (msgspec.DecodeError,),
        )
        self._to_builtins: Callable[[Any], Any] = msgspec.to_builtins

    def _plain(self, value: Any) -> Any:
        """`value` as the dicts, lists and scalars msgspec would write (Structs opened)."""
        return self._to_builtins(value)
