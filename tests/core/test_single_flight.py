"""Single flight inside one process, and between two cache instances (memory and Redis).

Two `Cache` objects on the same backends behave like two processes: each has its own
in-process flights, so they can only coordinate through the lock and the notifier.
The cross-process tests with real processes are in test_fleet.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING, Any, get_args

import pytest

from atomcache_core import (
    Cache,
    ConfigurationError,
    JsonSerializer,
    LockTimeoutError,
    MemoryNotifier,
    SerializationError,
    Uncacheable,
)
from atomcache_core._flight.options import FlightOptions
from atomcache_core._flight.waiting import WAITER_REACTIONS
from atomcache_core.backends.memory import MemoryStorage
from atomcache_core.protocols import EventStatus
from support.redis_server import SERVER_URLS

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable


class Counter:
    """A factory that counts its calls, optionally slow, failing or blocked on an event."""

    def __init__(self, delay: float = 0.0, value: Any = "value") -> None:
        """Return `value` after `delay` seconds."""
        self.calls = 0
        self.delay = delay
        self.value = value
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self.block = False
        self.fail: Exception | None = None

    async def __call__(self) -> Any:
        """Count the call, then wait, fail or return as configured."""
        self.calls += 1
        self.started.set()
        if self.block:
            await self.release.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        return self.value


@pytest.fixture(params=["memory", "redis", "valkey"])
async def pair(
    request: pytest.FixtureRequest, namespace: str
) -> AsyncIterator[Callable[..., Awaitable[tuple[Cache, Cache]]]]:
    """Make two caches on shared backends (like two processes), with the given settings."""
    made: list[Cache] = []

    async def make(**settings: Any) -> tuple[Cache, Cache]:
        if request.param == "memory":
            first = Cache(namespace=namespace, **settings)
            second = Cache(
                storage=first.storage,
                lock=first.lock,
                notifier=first.notifier,
                namespace=namespace,
                **settings,
            )
        else:
            url = request.getfixturevalue(SERVER_URLS[request.param])
            first = Cache.from_url(url, namespace=namespace, **settings)
            second = Cache.from_url(url, namespace=namespace, **settings)
        made.extend((first, second))
        return first, second

    yield make
    for cache in made:
        await cache.close()


async def test_one_thousand_concurrent_callers_compute_once(cache: Cache) -> None:
    """1,000 concurrent callers of one cold key run the factory once and share its value."""
    factory = Counter(delay=0.05, value={"answer": 42})
    results = await asyncio.gather(*(cache.get_or_set("cold", factory) for _ in range(1000)))
    assert factory.calls == 1
    assert results == [{"answer": 42}] * 1000
    assert cache.stats.computations == 1
    assert await cache.get("cold") == {"answer": 42}


async def test_sync_factories_and_lambdas_work(cache: Cache) -> None:
    """A plain function, and a lambda returning a coroutine, both work as factories."""

    def plain() -> str:
        return "from a function"

    async def coroutine() -> str:
        return "from a coroutine"

    assert await cache.get_or_set("sync", plain) == "from a function"
    assert await cache.get_or_set("lambda", lambda: coroutine()) == "from a coroutine"  # noqa: PLW0108 - the lambda is the point
    assert await cache.get("sync") == "from a function"


async def test_a_factory_is_called_in_the_event_loop(cache: Cache) -> None:
    """A callable returning an awaitable (`asyncio.gather`) works: it is called in the loop.

    Blocking work goes to a thread when the caller says so (`asyncio.to_thread`).
    """

    async def one() -> int:
        return 1

    async def two() -> int:
        return 2

    gathered = await cache.get_or_set("gathered", lambda: asyncio.gather(one(), two()))
    assert list(gathered) == [1, 2]  # a list, as a hit reads it back
    loop_thread = threading.get_ident()
    assert await cache.get_or_set("where", threading.get_ident) == loop_thread
    in_thread = await cache.get_or_set("thread", lambda: asyncio.to_thread(threading.get_ident))
    assert in_thread != loop_thread


async def test_a_miss_returns_what_a_hit_returns(cache: Cache) -> None:
    """The caller that computed gets the stored form too: a tuple is a list, an int key a str."""
    factory = Counter(value={"pair": (1, 2), "names": {1: "ada"}})
    computed = await cache.get_or_set("k", factory)
    read = await cache.get_or_set("k", factory)
    assert computed == read == {"pair": [1, 2], "names": {"1": "ada"}}
    assert factory.calls == 1


async def test_callers_of_one_computation_each_get_their_own_object(cache: Cache) -> None:
    """A caller that changes its value changes nobody else's, nor the factory's."""
    factory = Counter(value={"items": [1]})
    factory.block = True
    first = asyncio.create_task(cache.get_or_set("k", factory))
    await factory.started.wait()
    others = [asyncio.create_task(cache.get_or_set("k", factory)) for _ in range(2)]
    await asyncio.sleep(0)  # they join the computation under way
    factory.release.set()
    values = [await first, *await asyncio.gather(*others)]
    values[0]["items"].append(2)
    assert values[1:] == [{"items": [1]}] * 2
    assert factory.value == {"items": [1]}
    assert factory.calls == 1


async def test_a_value_computed_without_the_backend_is_what_a_hit_returns(
    namespace: str,
) -> None:
    """Redis away: the computed value still comes back in its stored form (fail open)."""
    async with Cache.from_url(
        "redis://127.0.0.1:1", namespace=namespace, socket_connect_timeout=0.2
    ) as cache:
        assert await cache.get_or_set("k", Counter(value=(1, 2))) == [1, 2]
        with pytest.raises(SerializationError):  # as when Redis answers: never shared as is
            await cache.get_or_set("s", Counter(value={"tags": {"a"}}))


async def test_none_is_computed_once(cache: Cache) -> None:
    """A factory returning None is cached like any value."""
    factory = Counter(value=None)
    assert await cache.get_or_set("k", factory) is None
    assert await cache.get_or_set("k", factory) is None
    assert factory.calls == 1


async def test_hit_does_not_call_the_factory(cache: Cache) -> None:
    """A fresh entry is returned without computing."""
    await cache.set("k", "stored")
    factory = Counter()
    assert await cache.get_or_set("k", factory) == "stored"
    assert factory.calls == 0
    assert cache.stats.hits == 1


async def test_ttl_and_tags_apply_to_computed_values(cache: Cache) -> None:
    """get_or_set stores with its TTL and tags."""
    await cache.get_or_set("k", Counter(), ttl=5, tags=["t"])
    remaining = await cache.ttl("k")
    assert remaining is not None
    assert 4 < remaining <= 5
    assert await cache.invalidate_tags("t") == 1


async def test_failure_stores_nothing_and_frees_the_lock(cache: Cache) -> None:
    """A raising factory: joined callers get the error; nothing stored; the lock is free."""
    factory = Counter(delay=0.02)
    factory.fail = RuntimeError("upstream down")
    results = await asyncio.gather(
        *(cache.get_or_set("k", factory) for _ in range(20)), return_exceptions=True
    )
    assert factory.calls == 1
    assert all(isinstance(result, RuntimeError) for result in results)
    assert await cache.exists("k") is False
    token = await cache.lock.acquire(cache.keys.lock("k"), 1)
    assert token is not None
    await cache.lock.release(cache.keys.lock("k"), token)
    factory.fail = None
    assert await cache.get_or_set("k", factory) == "value"
    assert factory.calls == 2
    assert cache.stats.errors == 1


async def test_unserializable_result_is_an_error_and_stores_nothing(cache: Cache) -> None:
    """A factory value JSON cannot hold raises SerializationError and leaves the lock free."""
    factory = Counter(value={1, 2})
    with pytest.raises(SerializationError):
        await cache.get_or_set("k", factory)
    assert await cache.lock.acquire(cache.keys.lock("k"), 1) is not None


async def test_waiter_is_woken_by_the_notification(
    pair: Callable[..., Awaitable[tuple[Cache, Cache]]],
) -> None:
    """The second instance waits for the first's computation and is woken by "stored"."""
    first, second = await pair(recheck_interval=30)
    factory = Counter(delay=0.2)
    started = time.monotonic()
    leader = asyncio.create_task(first.get_or_set("k", factory))
    await factory.started.wait()
    assert await second.get_or_set("k", factory) == "value"
    assert await leader == "value"
    assert time.monotonic() - started < 5
    assert factory.calls == 1
    assert second.stats.waits == 1
    assert second.stats.wakeups_notified == 1
    assert second.stats.wakeups_rechecked == 0


async def test_lock_is_extended_for_slow_factories(
    pair: Callable[..., Awaitable[tuple[Cache, Cache]]],
) -> None:
    """A factory running for 3x the lock TTL is still computed once."""
    first, second = await pair(lock_ttl=0.2, recheck_interval=0.1)
    factory = Counter(delay=0.6)
    leader = asyncio.create_task(first.get_or_set("k", factory))
    await factory.started.wait()
    results = await asyncio.gather(*(second.get_or_set("k", factory) for _ in range(5)))
    assert await leader == "value"
    assert results == ["value"] * 5
    assert factory.calls == 1
    assert second.stats.lock_takeovers == 0


async def test_a_leader_that_lost_its_lock_does_not_overwrite(
    pair: Callable[..., Awaitable[tuple[Cache, Cache]]],
) -> None:
    """When the lock is lost mid-computation, the newer leader's value stays."""
    first, second = await pair(lock_ttl=0.1, recheck_interval=0.05)
    slow = Counter(value="old")
    slow.block = True
    leader = asyncio.create_task(first.get_or_set("k", slow))
    await slow.started.wait()
    first.single_flight.heartbeat_interval = (
        3600  # the old leader stops extending: its lock expires
    )
    await asyncio.sleep(0.5)
    assert await second.get_or_set("k", Counter(value="new")) == "new"
    slow.release.set()
    assert await leader == "old"
    assert await first.get("k") == "new"


async def test_failure_wakes_waiters_and_one_of_them_leads(
    pair: Callable[..., Awaitable[tuple[Cache, Cache]]],
) -> None:
    """The leader fails: the waiting instance is woken by "failed" and computes it itself."""
    first, second = await pair(recheck_interval=30)
    failing = Counter(delay=0.1)
    failing.fail = RuntimeError("boom")
    leader = asyncio.create_task(first.get_or_set("k", failing))
    await failing.started.wait()
    good = Counter(value="recovered")
    started = time.monotonic()
    assert await second.get_or_set("k", good) == "recovered"
    assert time.monotonic() - started < 5
    with pytest.raises(RuntimeError, match="boom"):
        await leader
    assert good.calls == 1
    assert await first.get("k") == "recovered"


@pytest.mark.parametrize("policy", ["raise", "compute"])
async def test_wait_deadline_with_a_hung_leader(
    pair: Callable[..., Awaitable[tuple[Cache, Cache]]], policy: str
) -> None:
    """Waiters stop after wait_timeout: LockTimeoutError, or a value computed and not stored."""
    first, second = await pair(wait_timeout=0.3, recheck_interval=0.1, on_wait_timeout=policy)
    hung = Counter()
    hung.block = True
    leader = asyncio.create_task(first.get_or_set("k", hung))
    await hung.started.wait()
    started = time.monotonic()
    if policy == "raise":
        with pytest.raises(LockTimeoutError, match="wait_timeout"):
            await second.get_or_set("k", Counter())
    else:
        assert await second.get_or_set("k", Counter(value="local")) == "local"
        assert await second.get("k") is None
    assert 0.25 < time.monotonic() - started < 2
    hung.release.set()
    assert await leader == "value"


async def test_stale_while_revalidate_serves_at_once_and_refreshes_once(
    pair: Callable[..., Awaitable[tuple[Cache, Cache]]],
) -> None:
    """Inside stale_ttl the old value comes back at once; one refresh runs across instances."""
    first, second = await pair()
    await first.get_or_set("k", Counter(value="old"), ttl=0.1, stale_ttl=10)
    await asyncio.sleep(0.15)
    refresh = Counter(delay=0.2, value="new")
    started = time.monotonic()
    results = await asyncio.gather(
        *(cache.get_or_set("k", refresh, ttl=10, stale_ttl=10) for cache in (first, second) * 10)
    )
    assert time.monotonic() - started < 0.15
    assert results == ["old"] * 20
    assert first.stats.stale_hits + second.stats.stale_hits == 20
    for _ in range(100):
        if await first.get("k") == "new":
            break
        await asyncio.sleep(0.02)
    assert await first.get("k") == "new"
    assert refresh.calls == 1


async def test_stale_if_error_serves_the_old_value_when_the_refresh_fails(cache: Cache) -> None:
    """Inside stale_if_error a failing recomputation returns the stale value; outside it raises."""
    await cache.get_or_set("k", Counter(value="old"), ttl=0.1, stale_if_error=0.3)
    await asyncio.sleep(0.15)
    failing = Counter()
    failing.fail = RuntimeError("upstream down")
    assert await cache.get_or_set("k", failing, ttl=0.1, stale_if_error=0.3) == "old"
    assert await cache.get("k") is None
    await asyncio.sleep(0.3)
    with pytest.raises(RuntimeError, match="upstream down"):
        await cache.get_or_set("k", failing, ttl=0.1, stale_if_error=0.3)


async def test_early_refresh_keeps_steady_readers_from_waiting(cache: Cache) -> None:
    """With beta, keys read steadily are recomputed before expiry: one miss, ever."""
    # With a 50 ms computation and beta 5, a refresh starts about 0.25 s before expiry
    # (exponentially distributed): with a read every 10 ms, one starts with less than
    # 0.15 s to go once in 500,000 expiries, so even a loaded machine has time to finish.
    factory = Counter(delay=0.05)
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        assert await cache.get_or_set("k", factory, ttl=1.0, beta=5.0) == "value"
        await asyncio.sleep(0.01)
    assert cache.stats.misses == 1  # only the very first read found nothing
    assert cache.stats.waits == 0  # no reader ever waited for a recomputation
    assert cache.stats.stale_hits == 0  # every read was of a fresh value
    assert factory.calls >= 4


async def test_invalid_windows_are_refused(cache: Cache) -> None:
    """Negative stale windows or beta are configuration errors."""
    with pytest.raises(ValueError, match="stale_ttl"):
        await cache.get_or_set("k", Counter(), stale_ttl=-1)
    with pytest.raises(ValueError, match="on_wait_timeout"):
        Cache(on_wait_timeout="wait")  # type: ignore[arg-type]


async def test_a_lost_notification_is_covered_by_the_recheck(namespace: str) -> None:
    """With the leader's events never arriving, the waiter finishes by re-checking."""
    leader = Cache(namespace=namespace)
    deaf = Cache(
        storage=leader.storage,
        lock=leader.lock,
        notifier=MemoryNotifier(),  # hears nothing the leader publishes
        namespace=namespace,
        recheck_interval=0.2,
    )
    factory = Counter(delay=0.3)
    leading = asyncio.create_task(leader.get_or_set("k", factory))
    await factory.started.wait()
    assert await deaf.get_or_set("k", factory) == "value"
    assert await leading == "value"
    assert deaf.stats.wakeups_rechecked == 1
    assert deaf.stats.wakeups_notified == 0
    assert factory.calls == 1


async def test_a_cancelled_caller_does_not_cancel_the_others(cache: Cache) -> None:
    """Cancelling one caller leaves the shared computation running for the rest."""
    factory = Counter(delay=0.1)
    callers = [asyncio.create_task(cache.get_or_set("k", factory)) for _ in range(5)]
    await factory.started.wait()
    callers[0].cancel()
    results = await asyncio.gather(*callers[1:])
    assert results == ["value"] * 4
    assert callers[0].cancelled()
    assert factory.calls == 1
    assert await cache.get("k") == "value"


async def test_closing_the_cache_releases_a_running_computation(namespace: str) -> None:
    """close() cancels computations in flight and frees their locks."""
    cache = Cache(namespace=namespace)
    hung = Counter()
    hung.block = True
    caller = asyncio.create_task(cache.get_or_set("k", hung))
    await hung.started.wait()
    await cache.close()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert await cache.lock.acquire(cache.keys.lock("k"), 1) is not None


async def test_uncacheable_results_go_to_their_own_caller_only(cache: Cache) -> None:
    """Uncacheable(value) goes to its caller only; joined callers compute their own."""
    calls = 0

    async def personal() -> Uncacheable[str]:
        nonlocal calls
        calls += 1
        mine = calls
        await asyncio.sleep(0.05)
        return Uncacheable(f"for caller {mine}")

    results = await asyncio.gather(*(cache.get_or_set("k", personal) for _ in range(3)))
    assert sorted(results) == ["for caller 1", "for caller 2", "for caller 3"]
    assert await cache.exists("k") is False
    assert await cache.lock.acquire(cache.keys.lock("k"), 1) is not None


async def test_skipped_event_releases_waiting_instances(
    pair: Callable[..., Awaitable[tuple[Cache, Cache]]],
) -> None:
    """When the leader's result is uncacheable, a waiting instance computes at once."""
    first, second = await pair(recheck_interval=30)
    started = asyncio.Event()

    async def leader_factory() -> Uncacheable[str]:
        started.set()
        await asyncio.sleep(0.1)
        return Uncacheable("leader's")

    leading = asyncio.create_task(first.get_or_set("k", leader_factory))
    await started.wait()
    began = time.monotonic()
    assert await second.get_or_set("k", Counter(value="waiter's")) == "waiter's"
    assert time.monotonic() - began < 2
    assert await leading == "leader's"
    assert await first.exists("k") is False


async def test_a_declined_computation_holds_back_no_one(
    pair: Callable[..., Awaitable[tuple[Cache, Cache]]],
) -> None:
    """A declined result goes to its caller; joined callers and waiting instances go on.

    One of them takes the lock, computes and stores the value, once, as if the declined
    computation had never run (an HTTP request refused by the app's checks).
    """
    first, second = await pair(recheck_interval=30)
    started, release = asyncio.Event(), asyncio.Event()

    async def declining() -> Uncacheable[str]:
        started.set()
        await release.wait()
        return Uncacheable("refused", declined=True)

    factory = Counter(delay=0.05, value="page")
    leading = asyncio.create_task(first.get_or_set("k", declining))
    await started.wait()
    joined = [asyncio.create_task(first.get_or_set("k", factory)) for _ in range(3)]
    waiting = [asyncio.create_task(second.get_or_set("k", factory)) for _ in range(3)]
    await asyncio.sleep(0)  # the joined callers reach the running fill
    release.set()
    began = time.monotonic()
    assert await asyncio.gather(*joined, *waiting) == ["page"] * 6
    assert time.monotonic() - began < 2  # woken, not rechecked 30 s later
    assert await leading == "refused"
    assert factory.calls == 1
    assert await first.get("k") == "page"


class CountingSerializer(JsonSerializer):
    """Counts how often stored bytes are decoded."""

    def __init__(self) -> None:
        """Start at zero."""
        super().__init__()
        self.loads_calls = 0

    def loads(self, data: bytes) -> Any:
        """Decode, counting."""
        self.loads_calls += 1
        return super().loads(data)


@pytest.mark.parametrize("reuse", [True, False])
async def test_immutable_values_are_decoded_once_per_stored_bytes(
    cache: Cache,
    reuse: bool,  # noqa: FBT001 - parametrized
) -> None:
    """With reuse_decoded, reading unchanged bytes again skips decoding; new bytes are decoded."""
    serializer = CountingSerializer()
    options = FlightOptions(ttl=60, serializer=serializer, reuse_decoded=reuse)
    await cache.single_flight.get_or_set("k", lambda: "first", options)
    computed = serializer.loads_calls  # 0, or 1: the caller's own copy of a mutable value
    for _ in range(3):
        found = await cache.single_flight.peek("k", options)
        assert found is not None
        assert found.value == "first"
    assert serializer.loads_calls - computed == (1 if reuse else 3)
    await cache.delete("k")
    await cache.single_flight.get_or_set("k", lambda: "second", options)
    found = await cache.single_flight.peek("k", options)
    assert found is not None
    assert found.value == "second"


class _StaleRead:
    """A view of a storage whose second read of one key answers from before a write."""

    def __init__(self, inner: MemoryStorage, key: str) -> None:
        self.inner = inner
        self.key = key
        self.reads = 0
        self.reading = asyncio.Event()
        self.proceed = asyncio.Event()

    async def get(self, key: str) -> bytes | None:
        data = await self.inner.get(key)
        if key == self.key:
            self.reads += 1
        if key == self.key and self.reads == 2:  # the waiter's look after subscribing
            self.reading.set()
            await self.proceed.wait()  # the leader stores and unlocks meanwhile
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_a_waiter_that_gets_the_lock_reads_again_before_computing(namespace: str) -> None:
    """Leader stores and unlocks between a waiter's read and its lock: no second computation."""
    leader = Cache(namespace=namespace)
    assert isinstance(leader.storage, MemoryStorage)
    view = _StaleRead(leader.storage, leader.keys.value("k"))
    waiter = Cache(storage=view, lock=leader.lock, notifier=leader.notifier, namespace=namespace)
    factory = Counter()
    factory.block = True
    leading = asyncio.create_task(leader.get_or_set("k", factory))
    await factory.started.wait()
    waiting = asyncio.create_task(waiter.get_or_set("k", factory))
    await view.reading.wait()  # the waiter read "no value" and is about to try the lock
    factory.release.set()
    assert await leading == "value"
    view.proceed.set()
    assert await waiting == "value"
    assert factory.calls == 1


async def test_a_factory_asking_for_its_own_key_fails_fast(cache: Cache) -> None:
    """get_or_set of a key inside its own computation (directly or via another key) raises.

    At once, with ConfigurationError naming the key; the lock is free afterwards, so the
    fleet is not held up by a computation that would wait for itself.
    """

    async def itself() -> str:
        return str(await cache.get_or_set("a", itself))

    async def through_b() -> str:
        return str(await cache.get_or_set("b", back_to_a))

    async def back_to_a() -> str:
        return str(await cache.get_or_set("a", through_b))

    for factory in (itself, through_b):
        started = time.monotonic()
        with pytest.raises(ConfigurationError, match="'a' while computing it"):
            await asyncio.wait_for(cache.get_or_set("a", factory), 5)
        assert time.monotonic() - started < cache.single_flight.wait_timeout
        for key in ("a", "b"):
            token = await cache.lock.acquire(cache.keys.lock(key), 1)
            assert token is not None, f"the lock of {key!r} is still held"
            await cache.lock.release(cache.keys.lock(key), token)
    assert await cache.get_or_set("a", Counter()) == "value"


def test_a_waiter_knows_what_to_do_on_every_event() -> None:
    """Every event status has a row in the waiter's table: a new status cannot go unhandled."""
    assert set(WAITER_REACTIONS) == set(get_args(EventStatus))
    assert [status for status, reaction in WAITER_REACTIONS.items() if reaction.skip] == ["skipped"]
    assert not WAITER_REACTIONS["computing"].look  # a heartbeat: wait on, no command
