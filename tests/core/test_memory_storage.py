"""What only the in-memory storage promises: bounded size, expired entries dropped."""

from __future__ import annotations

import asyncio

import pytest

from atomcache_core import Cache, ConfigurationError, MemoryStorage
from atomcache_core.backends._budget import ENTRY_OVERHEAD


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


@pytest.mark.parametrize("bound", [0, -1, 1.5, True])
def test_invalid_bound_is_refused(bound: object) -> None:
    """max_entries and max_bytes must be positive integers."""
    with pytest.raises(ConfigurationError, match="max_entries"):
        MemoryStorage(max_entries=bound)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="max_bytes"):
        MemoryStorage(max_bytes=bound)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="max_bytes"):
        Cache.from_url("memory://", max_bytes=bound)  # type: ignore[arg-type]


async def test_bytes_never_exceed_the_bound() -> None:
    """Past max_bytes the least recently used go; the count is exact after deletes."""
    storage = MemoryStorage(max_bytes=100_000)
    for index in range(1000):
        await storage.set(f"k{index}", b"v" * 1000, 10, [f"tag{index % 7}"])
        assert storage.held_bytes <= storage.max_bytes
    assert len(storage) == 100_000 // (1000 + 4 + ENTRY_OVERHEAD)
    assert await storage.get("k999") == b"v" * 1000
    assert await storage.get("k0") is None
    await storage.delete("k999")
    await storage.invalidate_tags([f"tag{n}" for n in range(7)])
    await storage.clear("")
    assert len(storage) == 0
    assert storage.held_bytes == 0


async def test_a_value_larger_than_the_bound_is_not_kept() -> None:
    """It is not stored, and evicts nothing to make room."""
    storage = MemoryStorage(max_bytes=10_000)
    await storage.set("small", b"s", 10)
    await storage.set("huge", b"h" * 20_000, 10)
    assert await storage.get("huge") is None
    assert await storage.get("small") == b"s"


def test_the_defaults_are_finite() -> None:
    """10,000 entries and 64 MiB, for MemoryStorage and memory:// alike."""
    for storage in (MemoryStorage(), Cache.from_url("memory://").storage, Cache().storage):
        assert isinstance(storage, MemoryStorage)
        assert (storage.max_entries, storage.max_bytes) == (10_000, 64 * 1024 * 1024)
    assert Cache.from_url("memory://", max_bytes=5000).storage.max_bytes == 5000  # type: ignore[attr-defined]
