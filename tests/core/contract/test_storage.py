"""The `Storage` contract, run against every implementation."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from atomcache_core import Storage
from atomcache_core.keys import KeyBuilder

if TYPE_CHECKING:
    from support.backends import Backends

HOSTILE_KEYS = [
    "*",
    "a*",
    "?",
    "[ab]",
    "[^a]",
    "\\",
    "\\*",
    "{tag}",
    "}{",
    "line\nbreak",
    "nul\x00byte",
    " ",
    "ünïcødé ✓",
    "x" * 65536,
]


async def test_implements_the_protocol(backends: Backends) -> None:
    """Each storage satisfies the `Storage` Protocol."""
    assert isinstance(backends.storage, Storage)


async def test_get_missing_is_none(backends: Backends) -> None:
    """Reading an absent key gives None."""
    assert await backends.storage.get(backends.keys.value("absent")) is None


@pytest.mark.parametrize("value", [b"", b"\x00\xff binary", b"x" * 1_000_000])
async def test_set_then_get_round_trips_bytes(backends: Backends, value: bytes) -> None:
    """Any bytes, empty and large included, come back unchanged."""
    key = backends.keys.value("k")
    await backends.storage.set(key, value, 10)
    assert await backends.storage.get(key) == value


async def test_set_overwrites(backends: Backends) -> None:
    """A second set replaces the value."""
    key = backends.keys.value("k")
    await backends.storage.set(key, b"one", 10)
    await backends.storage.set(key, b"two", 10)
    assert await backends.storage.get(key) == b"two"


async def test_ttl_is_honoured_within_50_ms(backends: Backends) -> None:
    """A value is there until its TTL and gone within 50 ms after it."""
    key = backends.keys.value("k")
    await backends.storage.set(key, b"v", 0.3)
    await asyncio.sleep(0.25)
    assert await backends.storage.get(key) == b"v"
    await asyncio.sleep(0.1)
    assert await backends.storage.get(key) is None


async def test_get_many_keeps_order_and_marks_missing(backends: Backends) -> None:
    """get_many answers in the order asked, None where absent."""
    keys = [backends.keys.value(name) for name in ("a", "b", "c")]
    await backends.storage.set_many({keys[0]: b"1", keys[2]: b"3"}, 10)
    assert await backends.storage.get_many(keys) == [b"1", None, b"3"]
    assert await backends.storage.get_many([]) == []


async def test_set_many_applies_the_ttl(backends: Backends) -> None:
    """set_many stores every item with the TTL given."""
    keys = [backends.keys.value(name) for name in ("a", "b")]
    await backends.storage.set_many(dict.fromkeys(keys, b"v"), 0.1)
    await asyncio.sleep(0.15)
    assert await backends.storage.get_many(keys) == [None, None]
    await backends.storage.set_many({}, 1)


async def test_delete_reports_whether_the_key_existed(backends: Backends) -> None:
    """Delete is True once, then False."""
    key = backends.keys.value("k")
    await backends.storage.set(key, b"v", 10)
    assert await backends.storage.delete(key) is True
    assert await backends.storage.delete(key) is False
    assert await backends.storage.get(key) is None


async def test_delete_many_counts_existing_keys(backends: Backends) -> None:
    """delete_many returns how many of the keys existed."""
    keys = [backends.keys.value(name) for name in ("a", "b", "c")]
    await backends.storage.set_many({keys[0]: b"1", keys[1]: b"2"}, 10)
    assert await backends.storage.delete_many(keys) == 2
    assert await backends.storage.delete_many(keys) == 0
    assert await backends.storage.delete_many([]) == 0


async def test_clear_removes_only_keys_with_the_prefix(backends: Backends) -> None:
    """Clearing namespace `app` leaves `app2` (a longer name with the same start) intact."""
    app, app2 = KeyBuilder(backends.keys.namespace), KeyBuilder(backends.keys.namespace + "2")
    many = {app.value(f"k{index}"): b"v" for index in range(1200)}
    await backends.storage.set_many(many, 10)
    await backends.storage.set(app2.value("k0"), b"kept", 10)
    assert await backends.storage.clear(app.value_prefix) == 1200
    assert await backends.storage.get_many(list(many)) == [None] * 1200
    assert await backends.storage.get(app2.value("k0")) == b"kept"


async def test_clear_takes_glob_characters_literally(backends: Backends) -> None:
    """A prefix containing `*?[]` matches only keys that literally start with it."""
    await backends.storage.set("lit[a]*?x", b"1", 10)
    await backends.storage.set("lita-x", b"2", 10)
    assert await backends.storage.clear("lit[a]*?") == 1
    assert await backends.storage.get("lita-x") == b"2"
    await backends.storage.delete("lita-x")


async def test_invalidate_tags_removes_tagged_keys_only(backends: Backends) -> None:
    """Invalidating a tag removes every key stored with it and nothing else."""
    keys = backends.keys
    red, blue = keys.tag_buckets("red"), keys.tag_buckets("blue")
    await backends.storage.set(keys.value("a"), b"1", 10, keys.tags(["red"], "a"))
    await backends.storage.set(keys.value("b"), b"2", 10, keys.tags(["red", "blue"], "b"))
    await backends.storage.set(keys.value("c"), b"3", 10, keys.tags(["blue"], "c"))
    await backends.storage.set(keys.value("d"), b"4", 10)
    assert await backends.storage.invalidate_tags(red) == 2
    values = await backends.storage.get_many([keys.value(name) for name in "abcd"])
    assert values == [None, None, b"3", b"4"]
    assert await backends.storage.invalidate_tags(red) == 0
    assert await backends.storage.invalidate_tags([*blue, *red]) == 1
    assert await backends.storage.invalidate_tags([]) == 0


async def test_a_tag_outlives_none_of_its_entries(backends: Backends) -> None:
    """A short-lived tag write does not shorten the tag of a longer-lived entry."""
    keys = backends.keys
    await backends.storage.set(keys.value("long"), b"1", 10, keys.tags(["t"], "long"))
    # a key in the same bucket, so both entries share one tag set
    short = next(
        name
        for name in map(str, range(10_000))
        if keys.tags(["t"], name) == keys.tags(["t"], "long")
    )
    await backends.storage.set(keys.value(short), b"2", 0.05, keys.tags(["t"], short))
    await asyncio.sleep(0.1)
    assert await backends.storage.invalidate_tags(keys.tag_buckets("t")) == 1
    assert await backends.storage.get(keys.value("long")) is None


@pytest.mark.parametrize("user_key", HOSTILE_KEYS, ids=repr)
async def test_hostile_keys_are_stored_literally(backends: Backends, user_key: str) -> None:
    """Keys with glob characters, newlines, NUL, braces or 64 KiB of text are their own keys."""
    keys = backends.keys
    tag_keys = keys.tags([user_key], user_key)
    await backends.storage.set(keys.value(user_key), b"hostile", 10, tag_keys)
    await backends.storage.set(keys.value("plain"), b"plain", 10)
    assert await backends.storage.get(keys.value(user_key)) == b"hostile"
    assert await backends.storage.delete(keys.value(user_key)) is True
    assert await backends.storage.get(keys.value("plain")) == b"plain"
    assert await backends.storage.invalidate_tags(keys.tag_buckets(user_key)) == 0
