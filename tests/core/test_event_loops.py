"""One cache, several event loops: `asyncio.run` after `asyncio.run`, and threads at once.

A script, a Celery task or a test suite may run a cache made at import time in one
`asyncio.run` after another; a threaded server may run an event loop per thread. Each
loop gets connections, a subscriber, a local tier and in-process single flight of its
own (docs/core.md, "Event loops and threads").
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import logging
import sys
import threading
import warnings
from typing import TYPE_CHECKING, Any

import pytest
from redis.asyncio import Redis

import atomcache_core
from atomcache_core import Cache, ConfigurationError, MemoryNotifier, MemoryStorage
from atomcache_core.keys import KeyBuilder
from support.redis_server import RedisServer
from support.waiting import compute_with_a_notified_waiter, until, until_serving, until_value

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Coroutine, Iterator

    from atomcache_core.backends._subscription import QueueSubscription

RUNS = 2  # asyncio.run calls one after another
THREADS = 2  # threads, each with its own event loop, calling at once
KEYS = 20  # distinct keys each thread asks for, each several times
CALLS = 100  # calls each thread makes at once
#: How many times each number was squared (global: a closure's variables would be keyed).
COMPUTED = collections.Counter[int]()


def run(work: Coroutine[Any, Any, Any], timeout: float = 20) -> Any:
    """`asyncio.run(work)`, failing after `timeout` seconds rather than hanging."""
    return asyncio.run(asyncio.wait_for(work, timeout))


@pytest.fixture
def quiet(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail the test if anything logs a warning or worse (e.g. "Event loop is closed")."""
    with caplog.at_level(logging.WARNING):
        yield
    assert not caplog.records, [record.getMessage() for record in caplog.records]


async def use(cache: Cache, run_number: int) -> None:
    """The data API and in-process single flight, as any run of a script would use them."""
    await cache.set("plain", run_number)
    assert await cache.get("plain") == run_number
    assert await cache.get_many(["plain", "absent"]) == [run_number, None]
    calls = collections.Counter[str]()

    async def compute() -> int:
        calls["computed"] += 1
        await asyncio.sleep(0)
        return run_number

    key = f"computed-{run_number}"
    assert (
        await asyncio.gather(*(cache.get_or_set(key, compute) for _ in range(10)))
        == [run_number] * 10
    )
    assert calls["computed"] == 1
    assert await cache.delete(key)
    assert await cache.get(key, "gone") == "gone"


@pytest.mark.usefixtures("quiet")
def test_a_redis_cache_serves_one_asyncio_run_after_another(redis_url: str, namespace: str) -> None:
    """A Redis cache made outside any loop works in each `asyncio.run`, as in the first.

    In every run a waiter is woken by the notification (the re-check interval is a
    minute), and nothing fails or logs on the connections of the loops that ended.
    """
    cache = Cache.from_url(redis_url, namespace=namespace, recheck_interval=60)

    async def once(run_number: int) -> None:
        await use(cache, run_number)
        leader = Cache.from_url(redis_url, namespace=namespace)
        admin = Redis.from_url(redis_url)
        try:
            await compute_with_a_notified_waiter(leader, cache, admin, f"flight-{run_number}")
        finally:
            await leader.close()
            await admin.aclose()

    for run_number in range(RUNS):
        run(once(run_number))
    assert cache.stats.errors == 0
    run(cache.close())


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize("server", ["cluster_url", "sentinel_url"])
def test_a_cluster_or_sentinel_cache_serves_one_asyncio_run_after_another(
    request: pytest.FixtureRequest, server: str, namespace: str
) -> None:
    """On a Redis Cluster and behind Sentinel too, each run gets clients of its own."""
    cache = Cache.from_url(request.getfixturevalue(server), namespace=namespace)
    for run_number in range(RUNS):
        run(use(cache, run_number))
    assert cache.stats.errors == 0
    run(cache.close())


@pytest.mark.usefixtures("quiet")
def test_a_local_tier_listens_again_in_each_asyncio_run(redis_url: str, namespace: str) -> None:
    """A cache with a local tier serves hits in each run and drops another instance's deletes.

    Its listener of the first run ended with that run's loop: in the next run a new
    one subscribes, and a `delete` through another instance reaches this one's tier
    within a second, where `local_ttl` would keep the old value for five.
    """
    cache = Cache.from_url(redis_url, namespace=namespace, local_ttl=5)

    async def once(run_number: int) -> None:
        await use(cache, run_number)
        await until_serving(cache)
        await cache.set("shared", f"old-{run_number}")
        assert await cache.get("shared") == f"old-{run_number}"  # now held locally
        other = Cache.from_url(redis_url, namespace=namespace, local_ttl=5)
        try:
            assert await other.delete("shared")
        finally:
            await other.close()
        await until_value(cache, "shared", None, timeout=1)

    for run_number in range(RUNS):
        run(once(run_number))
    assert cache.stats.errors == 0
    run(cache.close())


class SubscriptionsSeen(MemoryNotifier):
    """The in-memory notifier, telling (`subscribed`) when a subscription begins."""

    subscribed: asyncio.Event

    @contextlib.asynccontextmanager
    async def subscribe(self, key: str) -> AsyncIterator[QueueSubscription]:
        """`MemoryNotifier.subscribe`; `subscribed` is set once the subscription is active."""
        async with super().subscribe(key) as subscription:
            self.subscribed.set()
            yield subscription


@pytest.mark.usefixtures("quiet")
def test_the_memory_cache_serves_one_asyncio_run_after_another() -> None:
    """The in-memory backends work in each `asyncio.run`; their values outlive each run.

    A second cache on the same backends computes while this one waits: the waiter is
    woken by the in-process notification, not by its re-check.
    """
    storage, notifier = MemoryStorage(), SubscriptionsSeen()
    cache = Cache(storage=storage, notifier=notifier, recheck_interval=60)
    leader = Cache(storage=storage, notifier=notifier)

    async def once(run_number: int) -> None:
        if run_number:
            assert await cache.get("plain") == run_number - 1  # kept from the run before
        await use(cache, run_number)
        release, notifier.subscribed = asyncio.Event(), asyncio.Event()

        async def compute() -> str:
            await release.wait()
            return "computed"

        key = f"flight-{run_number}"
        leading = asyncio.create_task(leader.get_or_set(key, compute))
        waiting = asyncio.create_task(cache.get_or_set(key, compute))
        await notifier.subscribed.wait()  # the waiter's look follows at once: it waits
        release.set()
        assert [await leading, await waiting] == ["computed", "computed"]

    for run_number in range(RUNS):
        run(once(run_number))
    assert cache.stats.waits == cache.stats.wakeups_notified == RUNS


def test_an_invalidation_kept_in_one_run_is_replayed_by_the_next(namespace: str) -> None:
    """A delete Redis did not take before its `asyncio.run` ended is replayed in the next.

    The replay of the first run ended with its loop; the next run's first call takes
    it over, and reads nothing of the key meanwhile.
    """
    with RedisServer() as server:
        cache = Cache.from_url(server.url, namespace=namespace, invalidation_timeout=0.1)
        admin = KeyBuilder(namespace).value("k")

        async def first() -> None:
            await cache.set("k", "old")
            server.pause()
            assert not await cache.delete("k")  # kept: Redis did not answer in time

        async def second() -> None:
            async with Redis.from_url(server.url) as client:
                assert await client.exists(admin)  # not replayed between the runs
                assert await cache.get("k") is None  # nor read meanwhile

                async def replayed() -> bool:
                    return not await client.exists(admin)

                await until(replayed, 5, "the replay")
            assert cache.pending_invalidations == 0
            await cache.close()

        try:
            run(first())
        finally:
            server.resume()
        assert cache.pending_invalidations == 1
        run(second())


@pytest.fixture
def default_cache() -> Iterator[Callable[[Cache], Cache]]:
    """Make a cache the default of `atomcache_core.cached` for the test; the old one after."""
    previous: list[Cache] = []

    def configure(cache: Cache) -> Cache:
        previous.append(atomcache_core.configure_default(cache))
        return cache

    yield configure
    if previous:
        atomcache_core.configure_default(previous[0])


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_the_module_level_cached_serves_threads_with_loops_of_their_own(
    request: pytest.FixtureRequest,
    default_cache: Callable[[Cache], Cache],
    backend: str,
    namespace: str,
) -> None:
    """Threads, each in its own `asyncio.run`, call one `@atomcache_core.cached` at once.

    Each gets the right values and none fails; each key is computed once in all: the
    other thread's callers wait for it and are woken by the notification (the re-check
    interval is a minute), in memory as on Redis.
    """
    url = "memory://" if backend == "memory" else request.getfixturevalue("redis_url")
    cache = default_cache(Cache.from_url(url, namespace=namespace, recheck_interval=60))
    COMPUTED.clear()
    start = threading.Barrier(THREADS)

    @atomcache_core.cached(ttl=60)
    async def square(number: int) -> int:
        COMPUTED[number] += 1  # one thread at a time: the GIL
        await asyncio.sleep(0.01)
        return number * number

    async def ask() -> list[int]:
        return await asyncio.gather(*(square(call % KEYS) for call in range(CALLS)))

    def thread_main() -> None:
        start.wait()
        results.append(run(ask()))

    results: list[list[int]] = []
    threads = [threading.Thread(target=thread_main) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert results == [[(call % KEYS) ** 2 for call in range(CALLS)]] * THREADS
    assert dict.fromkeys(range(KEYS), 1) == COMPUTED
    assert cache.stats.wakeups_rechecked == 0
    assert cache.stats.errors == 0
    run(cache.close())


def test_close_closes_what_a_loop_in_another_thread_opened(redis_url: str, namespace: str) -> None:
    """`close` in one loop closes the connections of a loop running in another thread."""
    cache = Cache.from_url(redis_url, namespace=namespace)
    other = asyncio.new_event_loop()
    thread = threading.Thread(target=other.run_forever)
    thread.start()
    try:

        async def there() -> Redis:
            await cache.set("k", 1)
            client = cache.redis_client
            assert isinstance(client, Redis)
            return client

        client = asyncio.run_coroutine_threadsafe(there(), other).result(timeout=10)
        pool = client.connection_pool
        assert pool._available_connections
        run(cache.close())
        connections = [*pool._in_use_connections, *pool._available_connections]
        assert not [connection for connection in connections if connection.is_connected]
        assert not asyncio.run_coroutine_threadsafe(tasks_left(), other).result(timeout=10)
    finally:
        other.call_soon_threadsafe(other.stop)
        thread.join(timeout=10)
        other.close()


async def tasks_left() -> set[asyncio.Task[Any]]:
    """The tasks of the running loop but the caller."""
    return asyncio.all_tasks() - {asyncio.current_task()}


def test_the_memory_storage_keeps_its_accounts_under_threads() -> None:
    """Threads writing, reading, evicting and deleting at once leave its byte count exact."""
    storage = MemoryStorage(max_entries=20)
    cache = Cache(storage=storage)

    async def churn(seed: int) -> None:
        for step in range(2000):
            key = f"k{(seed * 7 + step) % 50}"
            if step % 5 == 4:
                await cache.delete(key)
            else:
                await cache.set(key, "x" * (step % 40))
                await cache.get(key)

    threads = [threading.Thread(target=run, args=(churn(seed),)) for seed in range(4)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns as often as they can
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        sys.setswitchinterval(interval)
    assert len(storage) <= 20
    assert storage.held_bytes == sum(item.size for item in storage._data.values())


def test_a_cache_on_a_client_you_made_refuses_another_event_loop(
    redis_url: str, namespace: str
) -> None:
    """Backends on your own redis-py client serve the loop they first ran in, and no other.

    redis-py's asyncio connections belong to one event loop: a call from another is
    refused at once, with what to do, rather than failing on those connections.
    """
    client = Redis.from_url(redis_url)
    cache = Cache.from_client(client, namespace=namespace)

    async def first() -> None:
        await cache.set("k", 1)
        assert await cache.get("k") == 1
        await cache.close()
        await client.aclose()

    run(first())
    with pytest.raises(ConfigurationError, match=r"event loop.*Cache\.from_url"):
        run(cache.get("k"))


def test_the_client_taken_before_any_call_is_closed_with_the_cache(
    redis_url: str, namespace: str
) -> None:
    """`cache.redis_client` first thing in a loop (the CLI does): closed by `close` too."""

    async def use() -> None:
        async with Cache.from_url(redis_url, namespace=namespace) as cache:
            client = cache.redis_client
            assert client is not None
            assert await client.ping()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        asyncio.run(use())
        gc.collect()
    assert not [warning for warning in caught if warning.category is ResourceWarning]
