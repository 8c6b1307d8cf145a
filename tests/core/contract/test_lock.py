"""The `LockBackend` contract, run against every implementation."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from atomcache_core import LockBackend
from atomcache_core.keys import escape_glob

if TYPE_CHECKING:
    from support.backends import Backends


async def test_implements_the_protocol(backends: Backends) -> None:
    """Each lock backend satisfies the `LockBackend` Protocol."""
    assert isinstance(backends.lock, LockBackend)


async def test_only_one_owner_at_a_time(backends: Backends) -> None:
    """A held lock cannot be acquired again; after release it can."""
    key = backends.keys.lock("k")
    token = await backends.lock.acquire(key, 10)
    assert token is not None
    assert await backends.lock.acquire(key, 10) is None
    assert await backends.lock.release(key, token) is True
    assert await backends.lock.acquire(key, 10) is not None


async def test_tokens_are_random(backends: Backends) -> None:
    """Each acquisition gets its own unguessable token."""
    tokens = {await backends.lock.acquire(backends.keys.lock(f"k{i}"), 10) for i in range(20)}
    assert len(tokens) == 20
    assert all(token is not None and len(token) >= 32 for token in tokens)


async def test_release_is_compare_and_delete(backends: Backends) -> None:
    """A wrong token releases nothing; the owner's lock stays held."""
    key = backends.keys.lock("k")
    token = await backends.lock.acquire(key, 10)
    assert token is not None
    assert await backends.lock.release(key, "not-the-token") is False
    assert await backends.lock.acquire(key, 10) is None
    assert await backends.lock.release(key, token) is True
    assert await backends.lock.release(key, token) is False


async def test_lock_expires_and_the_old_owner_cannot_release_the_new_one(
    backends: Backends,
) -> None:
    """After the TTL another caller gets the lock, and the first owner's release fails."""
    key = backends.keys.lock("k")
    first = await backends.lock.acquire(key, 0.1)
    assert first is not None
    await asyncio.sleep(0.15)
    second = await backends.lock.acquire(key, 10)
    assert second is not None
    assert second != first
    assert await backends.lock.release(key, first) is False
    assert await backends.lock.extend(key, first, 10) is False
    assert await backends.lock.release(key, second) is True


async def test_extend_keeps_the_lock_past_its_first_ttl(backends: Backends) -> None:
    """The owner extends the lock; it is still held after the original TTL."""
    key = backends.keys.lock("k")
    token = await backends.lock.acquire(key, 0.2)
    assert token is not None
    await asyncio.sleep(0.1)
    assert await backends.lock.extend(key, token, 0.3) is True
    await asyncio.sleep(0.15)
    assert await backends.lock.acquire(key, 10) is None
    assert await backends.lock.extend(key, "not-the-token", 10) is False
    assert await backends.lock.release(key, token) is True


async def test_fenced_write_needs_the_lock_and_releases_it(backends: Backends) -> None:
    """set_if_locked stores only for the lock's owner, and frees the lock in the same step."""
    storage, keys = backends.storage, backends.keys
    value_key, lock_key = keys.value("k"), keys.lock("k")
    token = await backends.lock.acquire(lock_key, 10)
    assert token is not None
    wrong = "not-the-token"
    assert not await storage.set_if_locked(value_key, b"x", 10, (), lock_key=lock_key, token=wrong)
    assert await storage.get(value_key) is None
    tags = keys.tags(["t"], "k")
    assert await storage.set_if_locked(value_key, b"v", 10, tags, lock_key=lock_key, token=token)
    assert await storage.get(value_key) == b"v"
    assert await storage.invalidate_tags(keys.tag_buckets("t")) == 1
    assert await backends.lock.acquire(lock_key, 10) is not None


async def test_a_leader_that_lost_its_lock_cannot_overwrite(backends: Backends) -> None:
    """After the lock expired and was retaken, the old owner's fenced write is refused."""
    storage, keys = backends.storage, backends.keys
    value_key, lock_key = keys.value("k"), keys.lock("k")
    old = await backends.lock.acquire(lock_key, 0.05)
    assert old is not None
    await asyncio.sleep(0.1)
    new = await backends.lock.acquire(lock_key, 10)
    assert new is not None
    assert await storage.set_if_locked(value_key, b"new", 10, (), lock_key=lock_key, token=new)
    assert not await storage.set_if_locked(value_key, b"old", 10, (), lock_key=lock_key, token=old)
    assert await storage.get(value_key) == b"new"


async def test_a_revoked_lock_refuses_its_write_and_is_released(backends: Backends) -> None:
    """An invalidation revokes the computation: it keeps the lock, its write stores nothing."""
    storage, keys, lock = backends.storage, backends.keys, backends.lock
    value_key, lock_key = keys.value("k"), keys.lock("k")
    token = await lock.acquire(lock_key, 10)
    assert token is not None
    assert await lock.revoke([lock_key, keys.lock("not held")]) == 1
    assert await lock.acquire(lock_key, 10) is None  # still held
    assert await lock.extend(lock_key, token, 10)
    assert not await storage.set_if_locked(value_key, b"v", 10, (), lock_key=lock_key, token=token)
    assert await storage.get(value_key) is None
    assert await lock.acquire(lock_key, 10) is not None  # the refused write released it


async def test_revoke_matching_takes_a_glob(backends: Backends) -> None:
    """Only the locks whose keys match are revoked."""
    keys, lock = backends.keys, backends.lock
    tokens = {name: await lock.acquire(keys.lock(name), 10) for name in ("user:1", "order:1")}
    assert await lock.revoke_matching(escape_glob(keys.lock_prefix) + "{???}=user:*") == 1
    for name, token in tokens.items():
        assert token is not None
        stored = await backends.storage.set_if_locked(
            keys.value(name), b"v", 10, (), lock_key=keys.lock(name), token=token
        )
        assert stored is (name == "order:1")


async def test_a_vanished_lock_is_not_a_newer_owner(backends: Backends) -> None:
    """A lock that is gone (expired, evicted) does not refuse its owner's write."""
    storage, keys, lock = backends.storage, backends.keys, backends.lock
    token = await lock.acquire(keys.lock("k"), 10)
    assert token is not None
    assert await lock.release(keys.lock("k"), token)  # gone, as eviction takes it
    assert await storage.set_if_locked(
        keys.value("k"), b"v", 10, (), lock_key=keys.lock("k"), token=token
    )
    assert await storage.get(keys.value("k")) == b"v"


async def test_a_newer_value_is_never_overwritten(backends: Backends) -> None:
    """A value written after the computation began stays, lock held or not."""
    storage, keys, lock = backends.storage, backends.keys, backends.lock
    token = await lock.acquire(keys.lock("k"), 10)
    assert token is not None
    await asyncio.sleep(0.002)
    await storage.set(keys.value("k"), b"newer", 10)
    assert not await storage.set_if_locked(
        keys.value("k"), b"older", 10, (), lock_key=keys.lock("k"), token=token
    )
    assert await storage.get(keys.value("k")) == b"newer"


async def test_a_tag_invalidated_while_computing_refuses_the_write(backends: Backends) -> None:
    """Tracked tags invalidated after the lock refuse the write; invalidated before, not."""
    storage, keys, lock = backends.storage, backends.keys, backends.lock
    tags = keys.tags(["t"], "k")
    await storage.invalidate_tags(keys.tag_buckets("t"))  # before: no effect
    token = await lock.acquire(keys.lock("k"), 10)
    assert token is not None
    await storage.track_tags(tags, token=token, ttl=10)
    assert await storage.set_if_locked(
        keys.value("k"), b"v1", 10, tags, lock_key=keys.lock("k"), token=token
    )
    token = await lock.acquire(keys.lock("k"), 10)
    assert token is not None
    await storage.track_tags(tags, token=token, ttl=10)
    await asyncio.sleep(0.002)
    await storage.invalidate_tags(keys.tag_buckets("t"))
    assert not await storage.set_if_locked(
        keys.value("k"), b"v2", 10, tags, lock_key=keys.lock("k"), token=token
    )
    assert await storage.get(keys.value("k")) is None
    assert await lock.acquire(keys.lock("k"), 10) is not None
