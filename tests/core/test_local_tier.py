"""The local tier: hits that never leave the process, yet coherent across instances."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

import pytest
from redis.asyncio import Redis

from atomcache_core import Cache, ConfigurationError, MemoryStorage
from atomcache_core.backends._budget import DEFAULT_MAX_BYTES
from support.cache_process import CacheProcess
from support.redis_server import SERVER_URLS
from support.waiting import tier, until_serving, until_value

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from atomcache_core.protocols import Storage

LOCAL: dict[str, Any] = {"local_ttl": 30.0}


@pytest.fixture
async def control(redis_url: str) -> AsyncIterator[Redis]:
    """A plain client on the shared test server."""
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def local(redis_url: str, namespace: str) -> AsyncIterator[Cache]:
    """An instance with a local tier, in this process."""
    async with Cache.from_url(redis_url, namespace=namespace, **LOCAL) as cache:
        yield cache


async def redis_gets(control: Redis) -> int:
    """How many GET commands the server has run."""
    stats = await control.info("commandstats")
    return int(stats.get("cmdstat_get", {}).get("calls", 0))


async def test_hits_never_reach_redis(local: Cache, control: Redis) -> None:
    """After the first read, reads of a fresh entry are answered in process: no GET."""
    await until_serving(local)
    await local.set("k", {"n": 1})
    assert await local.get("k") == {"n": 1}
    before = await redis_gets(control)
    for _ in range(100):
        assert await local.get("k") == {"n": 1}
    assert await redis_gets(control) == before
    assert tier(local).hits >= 100


async def test_another_instances_writes_are_seen_within_50_ms(
    local: Cache, redis_url: str, namespace: str
) -> None:
    """Instance B's set, delete, set_many or tag invalidation reaches A's reads within 50 ms."""
    await until_serving(local)
    async with CacheProcess(redis_url, namespace, LOCAL) as other:
        delays = []
        for round_ in range(10):
            await other.call("set", "k", round_, None, ["t"])
            delays.append(await until_value(local, "k", round_, timeout=1.0))
            assert await local.get("k") == round_  # and now from the local tier
        await other.call("delete", "k")
        delays.append(await until_value(local, "k", None, timeout=1.0))
        await local.set_many({"a\n{x}": 1, "b": 2})
        assert await local.get_many(["a\n{x}", "b"]) == [1, 2]
        await other.call("set_many", {"a\n{x}": "one", "b": "two"})  # one announcement
        delays.append(await until_value(local, "a\n{x}", "one", timeout=1.0))
        assert await local.get("b") == "two"
        await other.call("set", "k", "tagged", None, ["t"])
        await until_value(local, "k", "tagged", timeout=1.0)
        await other.call("invalidate_tags", "t")
        delays.append(await until_value(local, "k", None, timeout=1.0))
    assert max(delays) < 0.05, delays


class GatedStorage:
    """The real storage, with reads held at a gate once they have their answer."""

    def __init__(self, storage: Storage) -> None:
        """Wrap `storage`, gate open."""
        self.storage = storage
        self.answered = asyncio.Event()
        self.gate = asyncio.Event()
        self.gate.set()

    async def get(self, key: str) -> bytes | None:
        """Read, then wait at the gate."""
        data = await self.storage.get(key)
        self.answered.set()
        await self.gate.wait()
        return data

    def __getattr__(self, name: str) -> Any:
        """Everything else is the real storage's."""
        return getattr(self.storage, name)


async def test_a_read_racing_an_invalidation_does_not_keep_the_old_value(
    local: Cache, redis_url: str, namespace: str
) -> None:
    """A read answered before B's write but finished after its announcement is not kept."""
    await until_serving(local)
    gated = GatedStorage(tier(local).shared)
    tier(local).shared = gated
    async with CacheProcess(redis_url, namespace, LOCAL) as other:
        await other.call("set", "k", "old")
        gated.gate.clear()
        reading = asyncio.create_task(local.get("k"))
        await gated.answered.wait()  # Redis answered "old"; the read is still in flight
        await other.call("set", "k", "new")
        deadline, value_key = time.monotonic() + 1.0, local.keys.value("k")
        while any(read.valid for read in tier(local)._reads.get(value_key, [])):
            assert time.monotonic() < deadline, "the announcement never arrived"
            await asyncio.sleep(0.001)
        gated.gate.set()
        assert await reading == "old"  # it was the value when the read was answered
        assert await local.get("k") == "new"  # but it was not kept


async def test_a_dropped_channel_empties_the_tier_before_it_serves_again(
    local: Cache, redis_url: str, namespace: str, control: Redis
) -> None:
    """Writes that were never announced to A are seen once A's channel dropped and came back."""
    await until_serving(local)
    await local.set("k", "old")
    assert await local.get("k") == "old"
    async with CacheProcess(redis_url, namespace) as silent:  # no local tier: no announcements
        await silent.call("set", "k", "new")
        assert await local.get("k") == "old"  # served locally: A was never told
        assert await control.client_kill_filter(_type="pubsub") >= 1
        await until_value(local, "k", "new", timeout=2.0)
    await until_serving(local)
    assert await local.get("k") == "new"


async def test_entries_are_kept_at_most_local_ttl(redis_url: str, namespace: str) -> None:
    """Even a write nobody announced is seen after local_ttl seconds."""
    async with (
        Cache.from_url(redis_url, namespace=namespace, local_ttl=0.5) as cache,
        CacheProcess(redis_url, namespace) as silent,
    ):
        await until_serving(cache)
        await cache.set("k", "old")
        assert await cache.get("k") == "old"
        kept = time.monotonic()
        await silent.call("set", "k", "new")
        assert await cache.get("k") == "old"
        await until_value(cache, "k", "new", timeout=2.0)
        assert 0.5 <= time.monotonic() - kept < 1.0


async def test_get_or_set_with_local_tiers_computes_once_and_sees_recomputations(
    local: Cache, redis_url: str, namespace: str
) -> None:
    """Single flight still holds across instances; a recomputation elsewhere is seen here."""
    await until_serving(local)
    calls = 0

    async def compute() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.1)
        return calls

    async with Cache.from_url(redis_url, namespace=namespace, **LOCAL) as other:
        await until_serving(other)
        results = await asyncio.gather(
            *(cache.get_or_set("k", compute) for cache in (local, other) for _ in range(50))
        )
        assert calls == 1
        assert set(results) == {1}
        assert await local.get_or_set("k", compute) == 1
        await other.delete("k")
        assert await other.get_or_set("k", compute) == 2
        await until_value(local, "k", 2, timeout=0.05)


def test_the_memory_storage_needs_no_local_tier() -> None:
    """local_ttl on the in-process storage is refused with the reason."""
    with pytest.raises(ConfigurationError, match="already in process"):
        Cache(storage=MemoryStorage(), local_ttl=1.0)
    with pytest.raises(ConfigurationError, match="local_ttl"):
        Cache.from_url("redis://127.0.0.1:1/0", local_ttl=-1)
    with pytest.raises(ConfigurationError, match="local_max_entries"):
        Cache.from_url("redis://127.0.0.1:1/0", local_ttl=1, local_max_entries=0)
    with pytest.raises(ConfigurationError, match="local_max_bytes"):
        Cache.from_url("redis://127.0.0.1:1/0", local_ttl=1, local_max_bytes=0)


async def test_the_tier_holds_at_most_local_max_entries(redis_url: str, namespace: str) -> None:
    """The least recently used entries leave the tier once it is full."""
    async with Cache.from_url(
        redis_url, namespace=namespace, local_ttl=30.0, local_max_entries=10
    ) as cache:
        await until_serving(cache)
        await cache.set_many({f"k{n}": n for n in range(20)})
        assert await cache.get_many([f"k{n}" for n in range(20)]) == list(range(20))
        assert len(tier(cache)) == 10


async def test_the_tier_holds_at_most_local_max_bytes(redis_url: str, namespace: str) -> None:
    """Past local_max_bytes the least recently used go; a value larger than it stays shared."""
    value = "x" * 10_000
    async with Cache.from_url(
        redis_url, namespace=namespace, local_ttl=30.0, local_max_bytes=50_000
    ) as cache:
        local_tier = tier(cache)
        assert local_tier.max_bytes == 50_000
        await until_serving(cache)
        await cache.set_many({f"k{n}": value for n in range(20)})
        assert await cache.get_many([f"k{n}" for n in range(20)]) == [value] * 20
        assert 0 < local_tier.held_bytes <= local_tier.max_bytes
        assert len(local_tier) == 4
        await cache.set("huge", "y" * 60_000)
        assert await cache.get("huge") == "y" * 60_000
        assert len(local_tier) == 4
        await cache.delete("k19")
        assert local_tier.held_bytes <= local_tier.max_bytes
        assert len(local_tier) == 3


async def test_the_local_tier_is_bounded_in_bytes_by_default(redis_url: str) -> None:
    """The default bound is finite: 64 MiB."""
    async with Cache.from_url(redis_url, local_ttl=1.0) as cache:
        assert tier(cache).max_bytes == DEFAULT_MAX_BYTES == 64 * 1024 * 1024


async def test_a_tier_whose_listener_stops_serves_nothing_until_it_listens_again(
    local: Cache,
) -> None:
    """A listener cancelled (as asyncio.run cancels it when its loop ends) empties the tier.

    Changes made while nothing listens would go unheard: the tier neither serves nor
    keeps anything until a new listener, started by the next read, proves the channel.
    """
    await local.set("k", "old")
    await until_serving(local)
    assert await local.get("k") == "old"
    assert len(tier(local)) == 1
    listener = tier(local)._listener
    assert listener is not None
    listener.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await listener
    assert not tier(local).serving
    assert len(tier(local)) == 0
    await until_serving(local)


#: The instance the forked workers of `test_forked_workers_see_each_others_writes` share,
#: built in the parent before the fork (as under gunicorn --preload).
PRELOADED: dict[str, Cache] = {}


def _forked_worker(role: str, ready: Any, written: Any, results: Any) -> None:
    """A worker of the preloaded instance: a reader waits for the writer's new value."""

    async def work() -> str:
        cache = PRELOADED["cache"]
        if role == "writer":
            await asyncio.to_thread(ready.wait, 10)
            await until_serving(cache)
            await cache.set("k", "new")
            written.set()
            return "written"
        assert await cache.get("k") == "old"
        await until_serving(cache)
        assert await cache.get("k") == "old"  # now held in this worker's local tier
        ready.set()
        await asyncio.to_thread(written.wait, 10)
        await until_value(cache, "k", "new", timeout=5)
        return "seen"

    try:
        results.put((role, asyncio.run(work())))
    except BaseException as error:  # noqa: BLE001 - reported to the parent
        results.put((role, repr(error)))


@pytest.mark.parametrize("server", ["redis", "valkey"])
def test_forked_workers_see_each_others_writes(
    request: pytest.FixtureRequest, server: str, namespace: str
) -> None:
    """Workers forked from one instance (gunicorn --preload) each get a local tier of their own.

    One worker's write evicts the entry from the other's tier: they no longer take each
    other's announcements for their own.
    """
    import multiprocessing  # noqa: PLC0415 - only this test forks

    url = request.getfixturevalue(SERVER_URLS[server])

    async def seed() -> None:
        async with Cache.from_url(url, namespace=namespace) as writer:
            await writer.set("k", "old")

    asyncio.run(seed())
    PRELOADED["cache"] = Cache.from_url(url, namespace=namespace, **LOCAL)
    context = multiprocessing.get_context("fork")
    ready, written, results = context.Event(), context.Event(), context.Queue()
    workers = [
        context.Process(target=_forked_worker, args=(role, ready, written, results))
        for role in ("reader", "writer")
    ]
    try:
        for worker in workers:
            worker.start()
        outcomes = dict(results.get(timeout=30) for _ in workers)
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.kill()
                worker.join()
        PRELOADED.clear()
    assert outcomes == {"reader": "seen", "writer": "written"}
