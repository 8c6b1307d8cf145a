"""Storage keys: namespace and key joined unambiguously, long keys hashed."""

from __future__ import annotations

import inspect

from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from atomcache_core._call_keys import call_key
from atomcache_core.keys import HASH_TAG_BUCKETS, MAX_LITERAL_KEY_BYTES, KeyBuilder

names = st.text(min_size=1, max_size=30)
user_keys = st.text(max_size=300)


@given(names, user_keys, names, user_keys)
def test_distinct_namespace_and_key_pairs_give_distinct_keys(
    namespace_a: str, key_a: str, namespace_b: str, key_b: str
) -> None:
    """Two different (namespace, key) pairs never share a storage key."""
    if (namespace_a, key_a) != (namespace_b, key_b):
        assert KeyBuilder(namespace_a).value(key_a) != KeyBuilder(namespace_b).value(key_b)


@given(names, user_keys)
def test_kinds_never_collide(namespace: str, key: str) -> None:
    """Value, lock, tag and channel keys of the same name are all different."""
    builder = KeyBuilder(namespace)
    (tag,) = builder.tags([key], key)
    built = {
        builder.value(key),
        builder.lock(key),
        tag,
        builder.channel(key),
        builder.invalidations,
    }
    assert len(built) == 5


@given(names)
def test_namespace_part_has_no_separator_glob_or_brace(namespace: str) -> None:
    """The encoded namespace cannot contain `:`, glob characters or braces."""
    prefix = KeyBuilder(namespace).value_prefix
    encoded = prefix.removeprefix("atomcache:").removesuffix(":v:")
    assert not set(encoded) & set(":*?[]{}\\\n\x00")


def test_short_keys_are_literal_and_long_ones_hashed() -> None:
    """Keys up to the limit are kept as they are; longer ones become a SHA-256."""
    builder = KeyBuilder("ns")
    assert builder.value("a*b").endswith("}=a*b")
    long_key = "x" * (MAX_LITERAL_KEY_BYTES + 1)
    hashed = builder.value(long_key)
    assert "}#" in hashed
    assert len(hashed) < 100
    assert builder.value(long_key) == hashed


def test_keys_that_are_not_utf8_are_hashed() -> None:
    """A key with a lone surrogate is hashed rather than rejected."""
    assert "}#" in KeyBuilder("ns").value("\udc80")


@given(names, user_keys)
def test_every_key_of_an_entry_shares_one_cluster_slot(namespace: str, key: str) -> None:
    """Value, lock, channel and the entry's tag sets hash to one slot, braces in keys or not."""
    builder = KeyBuilder(namespace)
    entry_keys = [builder.value(key), builder.lock(key), builder.channel(key)]
    entry_keys += builder.tags(["t", "{x}", key], key)
    assert len({key_slot(built.encode("utf-8", "surrogatepass")) for built in entry_keys}) == 1


@given(user_keys)
def test_a_tags_buckets_hold_every_tag_set_of_it(key: str) -> None:
    """Invalidating a tag reaches the set of any entry that carries it."""
    builder = KeyBuilder("ns")
    (tag_key,) = builder.tags(["t"], key)
    buckets = builder.tag_buckets("t")
    assert tag_key in buckets
    assert len(set(buckets)) == HASH_TAG_BUCKETS


def test_keys_spread_over_the_buckets() -> None:
    """10,000 keys use nearly every one of the buckets, so entries spread over a cluster."""
    builder = KeyBuilder("ns")
    slots = {key_slot(builder.value(f"user:{n}").encode()) for n in range(10_000)}
    assert len(slots) > 0.99 * HASH_TAG_BUCKETS


_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)  # NaN != NaN: sets of them are not comparable
    | st.text(max_size=8)
    | st.binary(max_size=8)
    | st.decimals(allow_nan=False)
    | st.dates()
)
_hashables = st.recursive(
    _scalars, lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3), max_leaves=6
)
_arguments = st.recursive(
    _hashables,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner)
        | st.dictionaries(_hashables, inner, max_size=3)
        | st.sets(_hashables, max_size=3)
    ),
    max_leaves=10,
)


def _structure(value: object) -> object:
    """What makes two arguments the same: types all the way down, scalars by repr."""
    kind = type(value)
    if kind in (list, tuple):
        return (kind, tuple(_structure(member) for member in value))  # type: ignore[attr-defined]
    if kind in (set, frozenset):
        return (kind, frozenset(_structure(member) for member in value))  # type: ignore[attr-defined]
    if kind is dict:
        items = value.items()  # type: ignore[attr-defined]
        return (kind, frozenset((_structure(k), _structure(v)) for k, v in items))
    return (kind, repr(value))


def _target(value: object, *rest: object, **named: object) -> None:
    """The signature keys are built for: one argument, then any others."""


_SIGNATURE = inspect.signature(_target)


def _key(args: tuple[object, ...], kwargs: dict[str, object]) -> str:
    return call_key("f", _SIGNATURE, args, kwargs, ())


@given(
    st.lists(_arguments, min_size=1, max_size=3),
    st.dictionaries(st.sampled_from(["a", "b"]), _arguments, max_size=2),
    st.lists(_arguments, min_size=1, max_size=3),
    st.dictionaries(st.sampled_from(["a", "b"]), _arguments, max_size=2),
)
def test_decorator_keys_are_one_to_one(
    args_a: list[object],
    kwargs_a: dict[str, object],
    args_b: list[object],
    kwargs_b: dict[str, object],
) -> None:
    """Two argument lists share a key exactly when they are the same (types included)."""
    same = _structure((tuple(args_a), kwargs_a)) == _structure((tuple(args_b), kwargs_b))
    assert (_key(tuple(args_a), kwargs_a) == _key(tuple(args_b), kwargs_b)) == same


@given(_arguments)
def test_a_decorator_key_ignores_the_order_of_dicts_and_sets(argument: object) -> None:
    """Rebuilding every dict and set in reverse order gives the same key."""

    def reordered(value: object) -> object:
        kind = type(value)
        if kind is dict:
            items = list(value.items())[::-1]  # type: ignore[attr-defined]
            return {k: reordered(v) for k, v in items}
        if kind is list:
            return [reordered(member) for member in value]  # type: ignore[attr-defined]
        if kind is tuple:
            return tuple(reordered(member) for member in value)  # type: ignore[attr-defined]
        return value

    assert _key((argument,), {}) == _key((reordered(argument),), {})
