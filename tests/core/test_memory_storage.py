"""What only the in-memory storage promises: bounded size, expired entries dropped."""

from __future__ import annotations

import asyncio

import pytest

from atomcache_core import ConfigurationError, MemoryStorage


async def test_least_recently_used_is_evicted() -> None:
    """Past max_entries, the entry read least recently goes first."""
    storage = MemoryStorage(max_entries=3)
    for name in ("a", "b", "c"):
        await storage.set(name, name.encode(), 10)
    await storage.get("a")
    await storage.set("d", b"d", 10)
    assert len(storage) == 3
    assert await storage.get_many(["a", "b", "c", "d"]) == [b"a", None, b"c", b"d"]


async def test_size_never_exceeds_the_bound() -> None:
    """Ten thousand writes into a 100-entry storage keep 100 entries."""
    storage = MemoryStorage(max_entries=100)
    for index in range(10_000):
        await storage.set(f"k{index}", b"v", 10, [f"tag{index % 7}"])
    assert len(storage) == 100
    assert sum(len(members) for members in storage._tags.values()) == 100


async def test_expired_entries_are_swept_without_being_read() -> None:
    """Expired entries are dropped by later writes even if nobody reads them."""
    storage = MemoryStorage()
    for index in range(500):
        await storage.set(f"old{index}", b"v", 0.01, ["t"])
    await asyncio.sleep(0.02)
    for index in range(1100):
        await storage.set(f"new{index}", b"v", 10)
    assert len(storage) == 1100
    assert "t" not in storage._tags


@pytest.mark.parametrize("bound", [0, -1, 1.5])
def test_invalid_bound_is_refused(bound: object) -> None:
    """max_entries must be a positive integer."""
    with pytest.raises(ConfigurationError, match="max_entries"):
        MemoryStorage(max_entries=bound)  # type: ignore[arg-type]
