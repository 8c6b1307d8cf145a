"""A process forked from one whose cache is in use shares none of its connections."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from typing import TYPE_CHECKING, Any

import pytest

from atomcache_core import Cache
from atomcache_core.backends.redis import RedisStorage
from support.waiting import until_serving

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterator

READS = 200  # reads each side makes while the other reads too
PAUSE = 0.002  # seconds between two of them, so that the two sides interleave

#: The parent's cache, in use when the child is forked, and the bytes it stored.
BUSY: dict[str, Any] = {}


def report(results: Any, work: Callable[[], Coroutine[Any, Any, Any]]) -> None:
    """In the child: put what `work` returned on `results`, or the error it raised."""
    try:
        results.put(asyncio.run(work()))
    except BaseException as error:  # noqa: BLE001 - reported to the parent
        results.put(repr(error))


#: Children are forked, as gunicorn `--preload` and `multiprocessing`'s default on Linux do.
FORK = multiprocessing.get_context("fork")


@contextlib.contextmanager
def forked(target: Callable[..., None], *args: Any) -> Iterator[tuple[Any, Any]]:
    """A child (not started yet) to run `target(*args, results)`, and that results queue.

    On exit the child is waited for (killed if it has not exited within 10 s) and
    `BUSY` is emptied.
    """
    results = FORK.Queue()
    child = FORK.Process(target=target, args=(*args, results))
    try:
        yield child, results
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
            child.join()
        BUSY.clear()


async def read_repeatedly(cache: Cache, key: str, expected: bytes) -> None:
    """Read `key` from Redis `READS` times; each read must answer its own key's bytes."""
    storage_key = cache.keys.value(key)
    for _ in range(READS):
        assert await cache.shared_storage.get(storage_key) == expected
        await asyncio.sleep(PAUSE)


def _child(held: Any, results: Any) -> None:
    """Read beside the parent (if it reads), then hold "shared" locally until it changes."""

    async def work() -> str:
        cache: Cache = BUSY["cache"]
        if "child" in BUSY:
            await read_repeatedly(cache, "child", BUSY["child"])
        assert await cache.get("shared") == "old"
        await until_serving(cache)
        assert await cache.get("shared") == "old"  # now held in the child's local tier
        held.set()
        deadline = time.monotonic() + 5
        while await cache.get("shared") != "new":
            assert time.monotonic() < deadline, "the child never saw the parent's write"
            await asyncio.sleep(0.005)
        return "ok"

    report(results, work)


@pytest.mark.parametrize("server", ["redis_url", "valkey_url", "cluster_url"])
async def test_a_child_forked_from_a_busy_instance_has_connections_of_its_own(
    request: pytest.FixtureRequest, server: str, namespace: str
) -> None:
    """A child forked while the parent's pool and pub/sub subscriber are open opens its own.

    Both go on reading at once, each its own key: a socket shared with the parent
    would hand one side the other's replies. The child's local tier then serves (its
    own subscription works) and drops what the parent writes.
    """
    url = request.getfixturevalue(server)
    cache = Cache.from_url(url, namespace=namespace, local_ttl=30)
    BUSY["cache"] = cache
    held = FORK.Event()
    try:
        with forked(_child, held) as (child, results):
            for key in ("parent", "child", "shared"):
                await cache.set(key, key if key != "shared" else "old")
            await until_serving(cache)
            BUSY["parent"], BUSY["child"] = [
                await cache.shared_storage.get(cache.keys.value(key)) for key in ("parent", "child")
            ]
            child.start()
            await read_repeatedly(cache, "parent", BUSY["parent"])
            assert await asyncio.to_thread(held.wait, 10), await asyncio.to_thread(
                results.get, timeout=5
            )
            await cache.set("shared", "new")
            outcome = await asyncio.to_thread(results.get, timeout=30)
    finally:
        await cache.close()
    assert outcome == "ok"


@pytest.mark.parametrize("server", ["redis_url", "valkey_url"])
def test_a_child_forked_after_a_warm_up_starts_with_a_working_cache(
    request: pytest.FixtureRequest, server: str, namespace: str
) -> None:
    """A cache used in an event loop that is not running at the fork (a warm-up at import).

    The child's first read answers, its local tier serves (it subscribes on a
    connection of its own) and drops what another instance writes.
    """
    url = request.getfixturevalue(server)
    cache = Cache.from_url(url, namespace=namespace, local_ttl=30)
    loop = asyncio.new_event_loop()  # the parent's, closed with the cache at the end

    async def warm_up() -> None:
        await cache.set("shared", "old")
        await until_serving(cache)
        assert await cache.get("shared") == "old"

    async def write_elsewhere() -> None:
        async with Cache.from_url(url, namespace=namespace, local_ttl=30) as writer:
            await writer.set("shared", "new")

    loop.run_until_complete(warm_up())
    BUSY["cache"] = cache
    held = FORK.Event()
    try:
        with forked(_child, held) as (child, results):
            child.start()
            assert held.wait(10), results.get(timeout=5)
            loop.run_until_complete(write_elsewhere())
            outcome = results.get(timeout=30)
    finally:
        loop.run_until_complete(cache.close())
        loop.close()
    assert outcome == "ok"


def _read_alone(results: Any) -> None:
    """Read "b" in the child, with a deadline."""

    async def work() -> Any:
        return await asyncio.wait_for(BUSY["cache"].get("b"), 5)

    report(results, work)


async def test_a_child_forked_while_a_batch_of_reads_forms_reads_on_its_own(
    redis_url: str, namespace: str
) -> None:
    """Forked in the very turn a pipelined batch forms: the child's reads do not join it.

    The batch is sent by a task of the parent's event loop, which never runs in the
    child: a read joining it would wait forever.
    """
    async with Cache.from_url(redis_url, namespace=namespace, observers=()) as cache:
        assert isinstance(cache.shared_storage, RedisStorage)
        batcher = cache.shared_storage._reads
        assert batcher is not None  # one server: reads are pipelined
        await cache.set_many({"a": 1, "b": 2})
        BUSY["cache"] = cache
        with forked(_read_alone) as (child, results):

            async def fork() -> None:
                assert batcher._forming is not None  # "a" is in flight, "b" forms a batch
                child.start()

            assert list(await asyncio.gather(cache.get("a"), cache.get("b"), fork())) == [
                1,
                2,
                None,
            ]
            outcome = await asyncio.to_thread(results.get, timeout=30)
    assert outcome == 2


def _close_in_child(results: Any) -> None:
    """Use the cache, entry kept warm included, then close it, with a deadline."""

    async def work() -> str:
        cache: Cache = BUSY["cache"]
        assert await cache.get_or_set("warm", lambda: "child", ttl=60, refresh_ahead=True)
        await asyncio.wait_for(cache.close(), 5)
        return "closed"

    report(results, work)


async def test_a_child_forked_while_the_parent_works_in_the_background_closes_its_cache(
    redis_url: str, namespace: str
) -> None:
    """Forked while the parent keeps an entry warm and its tier listens: the child's close returns.

    The parent's background tasks never run in the child: a close waiting for them to
    end would hang the child's shutdown (a gunicorn worker's, say).
    """
    async with Cache.from_url(redis_url, namespace=namespace, local_ttl=30) as cache:
        assert await cache.get_or_set("warm", lambda: "parent", ttl=60, refresh_ahead=True)
        await until_serving(cache)
        assert len(cache.refresher) == 1
        BUSY["cache"] = cache
        with forked(_close_in_child) as (child, results):
            child.start()
            outcome = await asyncio.to_thread(results.get, timeout=30)
    assert outcome == "closed"


def _compute_in_child(results: Any) -> None:
    """Compute the key the parent is computing, then close the cache, with deadlines."""

    async def work() -> str:
        cache: Cache = BUSY["cache"]
        value = await asyncio.wait_for(cache.get_or_set("k", lambda: "child", ttl=60), 15)
        await asyncio.wait_for(cache.close(), 5)
        return str(value)

    report(results, work)


@pytest.mark.parametrize("url", ["memory", "redis_url"])
async def test_a_child_forked_while_the_parent_computes_computes_on_its_own(
    request: pytest.FixtureRequest, url: str, namespace: str
) -> None:
    """Forked while a `get_or_set` of the key runs in the parent: the child does not join it.

    The parent's computation is a task of its event loop, which never runs in the child.
    On memory the child computes its own value; on Redis it waits for the parent's lock
    and reads the parent's value.
    """
    target = "memory://" if url == "memory" else request.getfixturevalue(url)
    release = asyncio.Event()

    async def slow() -> str:
        await release.wait()
        return "parent"

    async with Cache.from_url(target, namespace=namespace, recheck_interval=0.2) as cache:
        computing = asyncio.create_task(cache.get_or_set("k", slow, ttl=60))
        await asyncio.sleep(0.05)
        BUSY["cache"] = cache
        with forked(_compute_in_child) as (child, results):
            child.start()
            await asyncio.sleep(0.3)
            release.set()
            assert await computing == "parent"
            outcome = await asyncio.to_thread(results.get, timeout=30)
    assert outcome == ("child" if url == "memory" else "parent")
