"""Serializers: round trips for every JSON value, clear errors for the rest."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atomcache_core import JsonSerializer, PickleSerializer, SerializationError, Serializer

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
