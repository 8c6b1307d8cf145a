"""Invalidation is final: nothing invalidated is served again, by any instance.

An invalidation (`delete`, `delete_many`, `delete_pattern`, `clear`, `invalidate_tags`,
or a `set` of a newer value) that happens while a computation of the key runs wins:
the computation's result goes to the callers who were waiting for it, and is served
to no one who asks afterwards. Tag bookkeeping that Redis evicted (or that is gone for
any reason) makes its entries misses, and a lock that vanished is not a newer owner.
docs/reliability.md lists each guarantee and the test that shows it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import pytest

from atomcache_core import Cache
from atomcache_core.backends.redis import RedisLockBackend
from support.redis_server import SERVER_URLS

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

#: Every way to invalidate the key "x" (tagged "t") from a cache, and the value a
#: read of "x" may return afterwards besides a freshly computed one.
INVALIDATIONS: dict[str, Callable[[Cache], Awaitable[Any]]] = {
    "invalidate_tags": lambda cache: cache.invalidate_tags("t"),
    "delete": lambda cache: cache.delete("x"),
    "delete_many": lambda cache: cache.delete_many(["x", "y"]),
    "delete_pattern": lambda cache: cache.delete_pattern("x*"),
    "clear": lambda cache: cache.clear(),
    "set": lambda cache: cache.set("x", 2, tags=["t"]),
}


@pytest.fixture(params=["memory", "redis", "valkey", "cluster", "local tier"])
async def two_instances(
    request: pytest.FixtureRequest, namespace: str
) -> AsyncIterator[tuple[Cache, Cache]]:
    """Two caches on shared backends, as two processes of a fleet.

    "local tier": both on Redis with a local tier in front.
    """
    if request.param == "memory":
        first = Cache(namespace=namespace)
        second = Cache(
            storage=first.storage, lock=first.lock, notifier=first.notifier, namespace=namespace
        )
    else:
        fixture = {"cluster": "cluster_url", "local tier": "redis_url"}.get(
            request.param, SERVER_URLS.get(request.param, "")
        )
        url = request.getfixturevalue(fixture)
        local_ttl = 60.0 if request.param == "local tier" else None
        first = Cache.from_url(url, namespace=namespace, local_ttl=local_ttl)
        second = Cache.from_url(url, namespace=namespace, local_ttl=local_ttl)
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


class Load:
    """A factory that reads the database, then waits until released to return."""

    def __init__(self, db: dict[str, Any]) -> None:
        """Read `db["x"]` when called."""
        self.db = db
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self) -> Any:
        """The value read before the wait."""
        value = self.db["x"]
        self.started.set()
        await self.release.wait()
        return value


@pytest.mark.parametrize("kind", list(INVALIDATIONS))
@pytest.mark.parametrize("by", ["other instance", "same instance"])
async def test_an_invalidation_during_a_computation_wins(
    two_instances: tuple[Cache, Cache], kind: str, by: str
) -> None:
    """The computation's result goes to its callers only; every later read is fresh."""
    first, second = two_instances
    db = {"x": 1}
    load = Load(db)
    # warm the local tiers' listeners, so the test is about the computation only
    await first.get("w")
    await second.get("w")
    task = asyncio.create_task(first.get_or_set("x", load, tags=["t"], ttl=600))
    await load.started.wait()
    db["x"] = 2
    await INVALIDATIONS[kind](second if by == "other instance" else first)
    load.release.set()
    assert await task == 1  # the callers that were waiting may have it
    for cache in (first, second):
        assert await cache.get("x") in (None, 2)
        assert await cache.get_or_set("x", lambda: db["x"], tags=["t"], ttl=600) == 2
        assert await cache.get("x") == 2


async def test_an_invalidation_during_a_stale_refresh_wins(
    two_instances: tuple[Cache, Cache],
) -> None:
    """A stale-while-revalidate refresh that started before an invalidation stores nothing."""
    first, second = two_instances
    db = {"x": 1}
    await first.get_or_set("x", lambda: db["x"], tags=["t"], ttl=0.05, stale_ttl=600)
    await asyncio.sleep(0.1)
    load = Load(db)
    assert await first.get_or_set("x", load, tags=["t"], ttl=600, stale_ttl=600) == 1
    await load.started.wait()  # the background refresh runs
    db["x"] = 2
    await second.invalidate_tags("t")
    load.release.set()
    await asyncio.sleep(0.05)
    assert await second.get_or_set("x", lambda: db["x"], tags=["t"], ttl=600) == 2


async def test_callers_waiting_in_another_instance_get_a_fresh_value(
    two_instances: tuple[Cache, Cache],
) -> None:
    """A caller that asked after the invalidation is not handed the invalidated result."""
    first, second = two_instances
    db = {"x": 1}
    load = Load(db)
    leader = asyncio.create_task(first.get_or_set("x", load, tags=["t"], ttl=600))
    await load.started.wait()
    db["x"] = 2
    await second.invalidate_tags("t")
    asker = asyncio.create_task(second.get_or_set("x", lambda: db["x"], tags=["t"], ttl=600))
    await asyncio.sleep(0.05)
    load.release.set()
    assert await leader == 1
    assert await asker == 2


# --- bookkeeping that went away (as Redis eviction takes it) --------------------------


@pytest.fixture(params=["redis", "valkey", "cluster"])
async def redis_cache(request: pytest.FixtureRequest, namespace: str) -> AsyncIterator[Cache]:
    """A cache on one Redis server, one Valkey server, and a Redis Cluster."""
    fixture = "cluster_url" if request.param == "cluster" else SERVER_URLS[request.param]
    async with Cache.from_url(request.getfixturevalue(fixture), namespace=namespace) as cache:
        yield cache


async def evict(cache: Cache, pattern: str) -> int:
    """Delete the cache's keys matching `pattern` one by one, as eviction would."""
    client = cache.redis_client
    assert client is not None
    found = [key async for key in client.scan_iter(match=pattern, count=1000)]
    for key in found:
        await client.delete(key)
    return len(found)


async def test_entries_whose_tag_bookkeeping_was_evicted_are_misses(redis_cache: Cache) -> None:
    """With every tag key gone, `invalidate_tags` still reaches the tagged entries."""
    for number in range(20):
        await redis_cache.set(f"k{number}", number, tags=["t"])
    await redis_cache.set("untagged", "u")
    assert await evict(redis_cache, redis_cache.keys.tag_prefix + "*") > 0
    await redis_cache.invalidate_tags("t")
    assert await redis_cache.get_many([f"k{number}" for number in range(20)]) == [None] * 20
    assert await redis_cache.get("untagged") == "u"


async def test_an_evicted_lock_is_not_a_newer_owner(
    redis_cache: Cache, caplog: pytest.LogCaptureFixture
) -> None:
    """A leader whose lock vanished mid-computation still stores its result."""
    slow = Load({"x": "value"})
    task = asyncio.create_task(redis_cache.get_or_set("k", slow))
    await slow.started.wait()
    assert await evict(redis_cache, redis_cache.keys.lock("k")) == 1
    slow.release.set()
    with caplog.at_level(logging.WARNING, logger="atomcache"):
        assert await task == "value"
    assert "not stored" not in caplog.text
    assert await redis_cache.get("k") == "value"
    assert redis_cache.stats.computations == 1


async def test_an_overtaken_leader_is_still_refused_after_the_newer_one_finished(
    redis_cache: Cache,
) -> None:
    """Its lock gone and a newer value stored, the older computation does not overwrite it."""
    old = Load({"x": "old"})
    task = asyncio.create_task(redis_cache.get_or_set("k", old))
    await old.started.wait()
    await evict(redis_cache, redis_cache.keys.lock("k"))
    async with Cache.from_url(_url_of(redis_cache), namespace=redis_cache.namespace) as other:
        assert await other.get_or_set("k", lambda: "new") == "new"
    old.release.set()
    assert await task == "old"
    assert await redis_cache.get("k") == "new"


def _url_of(cache: Cache) -> str:
    client = cache.redis_client
    assert client is not None
    kwargs: dict[str, Any] = (
        client.connection_pool.connection_kwargs if hasattr(client, "connection_pool") else {}
    )
    if kwargs:
        return f"redis://{kwargs['host']}:{kwargs['port']}/0"
    nodes = client.get_nodes()  # type: ignore[union-attr]
    return "redis+cluster://" + ",".join(f"{node.host}:{node.port}" for node in nodes)


@pytest.mark.parametrize(
    "planted",
    [
        b"\0S",
        b"\0Sabc:",
        b"\0S1:5:",
        b"\0S1:1:999:x",
        b"\0S1:1:3:abcAC",
        b"\0S9:1:2:\xff\xfeAC",
        b"\0S9:1:5:{000}AC",  # a stamp of another slot
    ],
)
async def test_planted_bytes_that_look_wrapped_are_a_miss(
    redis_cache: Cache, planted: bytes
) -> None:
    """Bytes under a key that begin like a stored value's prefix: a counted miss, never an error."""
    client = redis_cache.redis_client
    assert client is not None
    await client.set(redis_cache.keys.value("k"), planted)
    assert await redis_cache.get("k", default="miss") == "miss"
    assert await redis_cache.get("k", default="miss") == "miss"  # the stamps it names, read with it
    assert await redis_cache.get_or_set("k", lambda: "computed", tags=["t"]) == "computed"
    await client.set(redis_cache.keys.value("k"), planted)
    await redis_cache.set("k", "set", tags=["t"])
    assert await redis_cache.get("k") == "set"


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_a_computation_longer_than_its_ttl_still_loses_to_an_invalidation(
    request: pytest.FixtureRequest, backend: str, namespace: str
) -> None:
    """The tags' tracking lives as long as the lock, not as long as the value's TTL."""
    url = "memory://" if backend == "memory" else request.getfixturevalue("redis_url")
    async with Cache.from_url(url, namespace=namespace, lock_ttl=0.3) as cache:
        db = {"x": 1}
        load = Load(db)
        task = asyncio.create_task(cache.get_or_set("x", load, tags=["t"], ttl=0.2))
        await load.started.wait()
        await asyncio.sleep(0.6)  # past the TTL and the first lock: heartbeats extend
        db["x"] = 2
        await cache.invalidate_tags("t")
        load.release.set()
        assert await task == 1
        assert await cache.get("x") is None


async def test_a_retried_acquisition_of_a_revoked_lock_still_refuses(redis_cache: Cache) -> None:
    """The lock script run twice for one caller (a lost answer) after a `delete`: refused."""
    lock = redis_cache.lock
    assert isinstance(lock, RedisLockBackend)
    key = redis_cache.keys.lock("k")
    first = await lock._acquire(keys=[key], args=["nonce", 10_000])
    assert first is not None
    await redis_cache.delete("k")  # revokes the lock
    again = (await lock._acquire(keys=[key], args=["nonce", 10_000])).decode()
    assert not again.endswith("!")
    stored = await redis_cache.storage.set_if_locked(
        redis_cache.keys.value("k"), b"old", 10, (), lock_key=key, token=again
    )
    assert not stored
