"""Storage keys: namespace and key joined unambiguously, long keys hashed."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from atomcache_core.keys import MAX_LITERAL_KEY_BYTES, KeyBuilder

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
    built = {builder.value(key), builder.lock(key), builder.tag(key), builder.channel(key)}
    assert len(built) == 4


@given(names)
def test_namespace_part_has_no_separator_glob_or_brace(namespace: str) -> None:
    """The encoded namespace cannot contain `:`, glob characters or braces."""
    prefix = KeyBuilder(namespace).value_prefix
    encoded = prefix.removeprefix("atomcache:").removesuffix(":v:")
    assert not set(encoded) & set(":*?[]{}\\\n\x00")


def test_short_keys_are_literal_and_long_ones_hashed() -> None:
    """Keys up to the limit are kept as they are; longer ones become a SHA-256."""
    builder = KeyBuilder("ns")
    assert builder.value("a*b").endswith(":v:=a*b")
    long_key = "x" * (MAX_LITERAL_KEY_BYTES + 1)
    hashed = builder.value(long_key)
    assert ":v:#" in hashed
    assert len(hashed) < 100
    assert builder.value(long_key) == hashed


def test_keys_that_are_not_utf8_are_hashed() -> None:
    """A key with a lone surrogate is hashed rather than rejected."""
    assert ":v:#" in KeyBuilder("ns").value("\udc80")
