"""Serializers: round trips for every JSON value, clear errors for the rest."""

from __future__ import annotations

import datetime as dt
import sys
import threading
from typing import Any

import pytest
from hypothesis import given
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


@given(json_values)
def test_json_round_trips_every_json_value(value: Any) -> None:
    """Whatever JSON can hold comes back equal."""
    serializer = JsonSerializer()
    assert serializer.loads(serializer.dumps(value)) == value


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


# The fast JSON serializers: the same contract, and the same JSON as JsonSerializer.
FAST = (OrjsonSerializer, MsgspecSerializer)
fast_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


@pytest.mark.parametrize("kind", FAST)
@given(value=fast_values)
def test_fast_serializers_round_trip_and_agree_with_json(
    kind: type[Serializer], value: Any
) -> None:
    """Round trip, and bytes either writes are read back by JsonSerializer and the other way."""
    serializer, default = kind(), JsonSerializer()
    assert serializer.loads(serializer.dumps(value)) == value
    assert default.loads(serializer.dumps(value)) == value
    assert serializer.loads(default.dumps(value)) == value


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
        (OrjsonSerializer, 2**70),  # msgspec writes integers of any size
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


@pytest.mark.parametrize("kind", FAST)
@pytest.mark.parametrize("data", [b"{", b"\xff\xfe", b"not json", b"[1,]"])
def test_fast_serializers_refuse_garbage_with_serialization_error(
    kind: type[Serializer], data: bytes
) -> None:
    """Bytes that are not JSON raise SerializationError (a miss for the cache)."""
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
