"""Serializers: round trips for every JSON value, clear errors for the rest."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math
import sys
import threading
from typing import Any

import msgspec
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from atomcache_core import (
    Cache,
    JsonSerializer,
    MsgspecSerializer,
    OrjsonSerializer,
    PickleSerializer,
    SerializationError,
    Serializer,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


@given(
    json_values
    | st.sets(st.integers())
    | st.frozensets(st.text())
    | st.binary()
    | st.tuples(st.integers())
)
def test_pickle_round_trips(value: Any) -> None:
    """PickleSerializer keeps Python types JSON cannot hold."""
    serializer = PickleSerializer()
    assert serializer.loads(serializer.dumps(value)) == value


@given(st.binary())
def test_json_loads_of_arbitrary_bytes_raises_only_serialization_error(data: bytes) -> None:
    """Random bytes either decode or raise SerializationError, nothing else."""
    try:
        JsonSerializer().loads(data)
    except SerializationError as exc:
        assert exc.direction == "loads"


@pytest.mark.parametrize(
    ("value", "type_name"),
    [({1, 2}, "set"), (b"raw", "bytes"), (dt.date(2024, 1, 1), "date"), (object(), "object")],
)
def test_json_names_the_type_and_the_fix(value: object, type_name: str) -> None:
    """A value JSON cannot hold raises SerializationError naming the type and the way out."""
    with pytest.raises(SerializationError, match=type_name) as info:
        JsonSerializer().dumps(value)
    assert info.value.value_type == type_name
    assert info.value.direction == "dumps"
    assert "model_dump" in str(info.value)
    assert "PickleSerializer" in str(info.value)


def test_json_refuses_circular_structures() -> None:
    """A list containing itself raises SerializationError, not RecursionError."""
    looped: list[Any] = []
    looped.append(looped)
    with pytest.raises(SerializationError):
        JsonSerializer().dumps(looped)


def test_pickle_names_unpicklable_types() -> None:
    """An unpicklable object raises SerializationError naming its type."""
    with pytest.raises(SerializationError, match="lock") as info:
        PickleSerializer().dumps(threading.Lock())
    assert info.value.direction == "dumps"


def test_pickle_loads_of_garbage_raises_serialization_error() -> None:
    """Bytes that are not a pickle raise SerializationError."""
    with pytest.raises(SerializationError) as info:
        PickleSerializer().loads(b"not a pickle")
    assert info.value.direction == "loads"


def test_both_implement_the_protocol() -> None:
    """Both serializers satisfy the Serializer Protocol."""
    assert isinstance(JsonSerializer(), Serializer)
    assert isinstance(PickleSerializer(), Serializer)


# The three JSON serializers: one contract, and one JSON that each reads from the others.
FAST = (OrjsonSerializer, MsgspecSerializer)
JSON_KINDS = (JsonSerializer, *FAST)
NON_FINITE = (math.nan, math.inf, -math.inf)
BEYOND_64_BITS = st.integers(min_value=2**64) | st.integers(max_value=-(2**63) - 1)
any_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | BEYOND_64_BITS | st.floats() | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


def leaves(value: Any) -> list[Any]:
    """The scalars of a JSON value, inside its lists and dicts."""
    if isinstance(value, dict):
        return [leaf for child in value.values() for leaf in leaves(child)]
    if isinstance(value, list):
        return [leaf for child in value for leaf in leaves(child)]
    return [value]


def same(left: Any, right: Any) -> bool:
    """Equal and of the same type all the way down: NaN is NaN, -0.0 is not 0.0, 1 is not 1.0."""
    if type(left) is not type(right):
        return False
    if isinstance(left, float):
        return repr(left) == repr(right)  # -0.0 is not 0.0, and nan is nan
    if isinstance(left, dict):
        return list(left) == list(right) and all(same(left[key], right[key]) for key in left)
    if isinstance(left, list):
        return len(left) == len(right) and all(map(same, left, right))
    return bool(left == right)


def refused(leaf: object) -> bool:
    """Whether a scalar must be refused: NaN, ±Infinity, an integer beyond 64 bits."""
    if isinstance(leaf, float):
        return not math.isfinite(leaf)
    return isinstance(leaf, int) and not -(2**63) <= leaf < 2**64


@pytest.mark.parametrize("kind", JSON_KINDS)
@given(value=any_json_values)
@example(value=[math.nan, -math.inf])
@example(value={"big": 2**70, "small": -(2**70), "zero": -0.0})
@example(value=[2**64 - 1, -(2**63), 2**64, -(2**63) - 1])
@example(value={"id": "123456789012345678901234567890", "n": None, "s": "null"})
def test_json_serializers_round_trip_exactly_and_read_each_other(
    kind: type[Serializer], value: Any
) -> None:
    """A value is refused when written, or all three JSON serializers read it back exactly."""
    try:
        data = kind().dumps(value)
    except SerializationError as exc:
        assert exc.direction == "dumps"
        must = any(refused(leaf) for leaf in leaves(value))
        assert must, f"{kind.__name__} refused {value!r}, which it can write"
        return
    for reader in JSON_KINDS:
        assert same(reader().loads(data), value), f"{kind.__name__} -> {reader.__name__}"


@pytest.mark.parametrize(
    ("kind", "value", "advice"),
    [
        *(
            (kind, value, ("None", "PickleSerializer"))
            for kind in JSON_KINDS
            for value in (*NON_FINITE, {"rows": [1.5, math.nan]}, [[-math.inf]])
        ),
        *(
            (kind, value, ("string", "PickleSerializer"))
            for kind in JSON_KINDS
            for value in (
                2**64,
                -(2**63) - 1,
                {"rows": [1, 2**70]},
                ["12345678901234567890", 2**80],
            )
        ),
    ],
)
def test_refusals_name_the_number_and_what_to_do_instead(
    kind: type[Serializer], value: object, advice: tuple[str, ...]
) -> None:
    """NaN, ±Infinity and integers beyond 64 bits are refused when written, named, with a fix."""
    with pytest.raises(SerializationError) as info:
        kind().dumps(value)
    assert info.value.direction == "dumps"
    assert info.value.value_type == type(value).__qualname__
    number = next(leaf for leaf in leaves(value) if refused(leaf))
    assert repr(number) in str(info.value)
    assert all(word in str(info.value) for word in advice)


@dataclasses.dataclass
class Reading:
    """A dataclass both fast serializers encode as an object."""

    value: float


class Level(float, enum.Enum):
    """An enum both fast serializers encode as its value."""

    TOP = math.inf


@pytest.mark.parametrize("kind", FAST)
@pytest.mark.parametrize("value", [Reading(math.nan), {"level": Level.TOP}, (1.0, -math.inf)])
def test_fast_serializers_find_nan_inside_what_they_encode(
    kind: type[Serializer], value: object
) -> None:
    """A non-finite float inside a dataclass, an enum or a tuple is refused, not written as null."""
    with pytest.raises(SerializationError, match="RFC 8259"):
        kind().dumps(value)


class Sample(msgspec.Struct):
    """A msgspec Struct holding a number."""

    value: float


@pytest.mark.parametrize("number", [math.nan, 2**70])
def test_msgspec_looks_inside_structs(number: float) -> None:
    """MsgspecSerializer refuses a Struct holding NaN or a long integer, and names it."""
    with pytest.raises(SerializationError, match=repr(number)):
        MsgspecSerializer().dumps([Sample(1.0), Sample(number)])


@pytest.mark.parametrize("kind", JSON_KINDS)
@pytest.mark.parametrize(
    "value",
    [
        [2**64 - 1, -(2**63)],
        {"id": "123456789012345678901234567890", "tiny": 0.00012345678901234567},
        [10**19, -(10**18), "2024-01-01-2024-12-31"],
    ],
)
def test_numbers_that_only_look_long_are_written(kind: type[Serializer], value: Any) -> None:
    """The 64-bit extremes, long digit runs in strings and floats: written and read back."""
    serializer = kind()
    assert same(serializer.loads(serializer.dumps(value)), value)


@pytest.mark.parametrize("kind", JSON_KINDS)
def test_an_integer_too_long_to_print_is_named_by_its_size(kind: type[Serializer]) -> None:
    """An integer of over 4300 digits (Python will not print it) is named by its bits."""
    with pytest.raises(SerializationError, match="an integer of 16610 bits") as info:
        kind().dumps({"n": 10**5000})
    assert info.value.direction == "dumps"


@pytest.mark.parametrize("kind", FAST)
def test_fast_serializers_store_none(kind: type[Serializer]) -> None:
    """`None` is a value like any other."""
    serializer = kind()
    assert serializer.dumps(None) == b"null"
    assert serializer.loads(b"null") is None


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        *((kind, value) for kind in FAST for value in (object(), threading.Lock())),
        (OrjsonSerializer, {1, 2}),  # msgspec writes sets as arrays
    ],
)
def test_fast_serializers_name_what_they_cannot_encode(
    kind: type[Serializer], value: object
) -> None:
    """A value they cannot encode raises SerializationError naming its type and the fix."""
    with pytest.raises(SerializationError) as info:
        kind().dumps(value)
    assert info.value.direction == "dumps"
    assert type(value).__qualname__ in str(info.value)
    assert "convert it" in str(info.value)


@pytest.mark.parametrize("kind", JSON_KINDS)
@pytest.mark.parametrize(
    "data",
    [b"{", b"\xff\xfe", b"not json", b"[1,]", b"NaN", b"[Infinity]", b'{"a":-Infinity}'],
)
def test_json_serializers_refuse_garbage_and_nan_with_serialization_error(
    kind: type[Serializer], data: bytes
) -> None:
    """Bytes that are not JSON, Python's `NaN` and `Infinity` included, are a miss."""
    with pytest.raises(SerializationError) as info:
        kind().loads(data)
    assert info.value.direction == "loads"


@pytest.mark.parametrize(
    ("kind", "module"), [(OrjsonSerializer, "orjson"), (MsgspecSerializer, "msgspec")]
)
def test_a_missing_extra_raises_import_error_naming_it(
    kind: type[Serializer], module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the library, the error says which extra to install."""
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=rf"pip install atomcache-core\[{module}\]"):
        kind()


def test_the_fast_serializers_implement_the_protocol() -> None:
    """Both satisfy the Serializer Protocol."""
    assert isinstance(OrjsonSerializer(), Serializer)
    assert isinstance(MsgspecSerializer(), Serializer)


@pytest.mark.parametrize("kind", FAST)
async def test_a_cache_uses_a_fast_serializer(kind: type[Serializer]) -> None:
    """`Cache(serializer=...)` stores and reads through it."""
    async with Cache(serializer=kind(), observers=()) as cache:
        await cache.set("k", {"rows": [1, 2, 3]})
        assert await cache.get("k") == {"rows": [1, 2, 3]}
